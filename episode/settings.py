"""episode-service settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker import Env, QueueType


@dataclass(frozen=True, slots=True)
class Settings:
    amqp_url: str = field(repr=False)
    database_url: str = field(repr=False)
    prefetch: int = 32
    faults_enabled: bool = False
    # Replies confirmed by the broker before their request is acked (docs/rpc.md).
    reply_confirms: bool = False
    cache_ttl_ms: int = 2000
    queue_type: QueueType = "classic"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    metrics_port: int = 9101
    # RPC over HTTP beside the queue (broker._http): off unless a port is set.
    rpc_http_host: str = "0.0.0.0"  # noqa: S104 - called from other containers
    rpc_http_port: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        queue_type = env.choice("RPC_QUEUE_TYPE", "classic", ("classic", "quorum"))
        return cls(
            amqp_url=env.text("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            database_url=env.text("DATABASE_URL", "sqlite+aiosqlite:///.run/episode.db"),
            prefetch=env.integer("PREFETCH", 32, low=1, high=65535),
            faults_enabled=env.flag("FAULTS_ENABLED", default=False),
            reply_confirms=env.flag("RPC_REPLY_CONFIRMS", default=False),
            cache_ttl_ms=env.integer("CACHE_TTL_MS", 2000, low=0, high=3_600_000),
            queue_type="quorum" if queue_type == "quorum" else "classic",
            metrics_host=env.text("METRICS_HOST", "0.0.0.0"),  # noqa: S104 - see above
            metrics_port=env.integer("METRICS_PORT", 9101, low=1, high=65535),
            rpc_http_host=env.text("RPC_HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_port=env.integer("RPC_HTTP_PORT", 0, low=1, high=65535) or None,
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )
