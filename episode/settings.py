"""episode-service settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker import Env, WorkerSettings


@dataclass(frozen=True, slots=True)
class Settings:
    worker: WorkerSettings
    database_url: str = field(repr=False)
    cache_ttl_ms: int = 2000

    @property
    def log_level(self) -> str:
        return self.worker.log_level

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        return cls(
            worker=WorkerSettings.from_env(env, prefetch=32, metrics_port=9101),
            database_url=env.text("DATABASE_URL", "sqlite+aiosqlite:///.run/episode.db"),
            cache_ttl_ms=env.integer("CACHE_TTL_MS", 2000, low=0, high=3_600_000),
        )
