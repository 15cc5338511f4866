"""drama-service settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from broker import Env


@dataclass(frozen=True, slots=True)
class Settings:
    # URLs may carry passwords: kept out of repr and so out of logs and tracebacks.
    amqp_url: str = field(repr=False)
    database_url: str = field(repr=False)
    http_host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on all interfaces
    http_port: int = 8080
    rpc_timeout_ms: int = 3000
    rpc_publisher_confirms: bool = True
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        return cls(
            amqp_url=env.text("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            database_url=env.text("DATABASE_URL", "sqlite+aiosqlite:///.run/drama.db"),
            http_host=env.text("HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            http_port=env.integer("HTTP_PORT", 8080, low=1, high=65535),
            rpc_timeout_ms=env.integer("RPC_TIMEOUT_MS", 3000, low=1, high=600_000),
            rpc_publisher_confirms=env.flag("RPC_PUBLISHER_CONFIRMS", default=True),
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )
