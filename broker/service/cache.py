"""A bounded, time-limited cache of read results, for catalogue data that may be seconds stale.

The catalogue (dramas, their episodes) changes when it is seeded, not per request; answering the
same question from the database hundreds of times a second is most of what drama-service and
episode-service would spend their CPU on. ``CACHE_TTL_MS`` bounds how stale an answer can be
(0 turns the caches off); the size bound keeps memory flat whatever the catalogue's size.

While a slow-database fault applies to the request (``broker.rpc.faults``), the cache steps aside:
the fault is there to make every request reach the database.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache
from prometheus_client import Counter

from broker.rpc.faults import db_delay

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CACHE_LOOKUPS = Counter(
    "cache_lookups",
    "Lookups in a service's read cache, by result (hit or miss).",
    ["cache", "result"],
)


class ReadCache(Generic[K, V]):
    """``get`` a value or None; ``put`` what the database answered. Off when ``ttl_s`` <= 0."""

    def __init__(self, name: str, ttl_s: float, maxsize: int = 10_000) -> None:
        self._entries: TTLCache[K, V] | None = TTLCache(maxsize, ttl_s) if ttl_s > 0 else None
        self._hit = CACHE_LOOKUPS.labels(name, "hit")
        self._miss = CACHE_LOOKUPS.labels(name, "miss")

    def get(self, key: K) -> V | None:
        if self._entries is None or db_delay() > 0:
            return None
        value = self._entries.get(key)
        (self._miss if value is None else self._hit).inc()
        return value

    def put(self, key: K, value: V) -> None:
        if self._entries is not None:
            self._entries[key] = value
