"""drama-service settings, read once from the environment."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from broker import ConfigError, Env, amqp_url_from_env

RpcTransport = Literal["amqp", "http"]


@dataclass(frozen=True, slots=True)
class Settings:
    # URLs may carry passwords: kept out of repr and so out of logs and tracebacks.
    amqp_url: str = field(repr=False)
    database_url: str = field(repr=False)
    http_host: str = "0.0.0.0"  # noqa: S104 - a service in a container listens on all interfaces
    http_port: int = 8080
    rpc_timeout_ms: int = 3000
    # One budget for the whole API request (every RPC gets what remains); default RPC_TIMEOUT_MS.
    request_timeout_ms: int = 3000
    # Admission control (docs/rpc.md, "Overload"): API requests in flight, calls waiting per
    # worker method; 0 turns a bound off.
    max_in_flight: int = 64
    admission_lag_ms: int = 0
    rpc_max_waiting: int = 48
    # The per-method breaker: consecutive timeouts that open it (0: off), and how long it stays
    # open before a probe.
    breaker_failures: int = 5
    breaker_cooldown_ms: int = 2000
    # A connection must send a whole request within this time of opening or of its last
    # response (slowloris); it is also the keep-alive idle timeout.
    http_idle_timeout_s: int = 10
    rpc_publisher_confirms: bool = False
    log_level: str = "INFO"
    cache_ttl_ms: int = 2000
    # How the workers are called: through RabbitMQ, or over HTTP at these base URLs.
    rpc_transport: RpcTransport = "amqp"
    episode_rpc_url: str | None = None
    stream_rpc_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = Env(os.environ if environ is None else environ)
        transport = env.choice("RPC_TRANSPORT", "amqp", ("amqp", "http"))
        urls = {name: env.text(name, "") or None for name in ("EPISODE_RPC_URL", "STREAM_RPC_URL")}
        if transport == "http":
            for name, url in urls.items():
                _check_rpc_url(name, url)
        rpc_timeout_ms = env.integer("RPC_TIMEOUT_MS", 3000, low=1, high=600_000)
        return cls(
            amqp_url=amqp_url_from_env(env),
            database_url=env.text("DATABASE_URL", "sqlite+aiosqlite:///.run/drama.db"),
            http_host=env.text("HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            http_port=env.integer("HTTP_PORT", 8080, low=1, high=65535),
            rpc_timeout_ms=rpc_timeout_ms,
            request_timeout_ms=env.integer(
                "REQUEST_TIMEOUT_MS", rpc_timeout_ms, low=1, high=600_000
            ),
            max_in_flight=env.integer("HTTP_MAX_IN_FLIGHT", 64, low=0, high=1_000_000),
            admission_lag_ms=env.integer("HTTP_ADMISSION_LAG_MS", 0, low=0, high=10_000),
            rpc_max_waiting=env.integer("RPC_MAX_WAITING", 48, low=0, high=1_000_000),
            breaker_failures=env.integer("BREAKER_FAILURES", 5, low=0, high=1_000_000),
            breaker_cooldown_ms=env.integer("BREAKER_COOLDOWN_MS", 2000, low=1, high=600_000),
            http_idle_timeout_s=env.integer("HTTP_IDLE_TIMEOUT_S", 10, low=1, high=3600),
            rpc_publisher_confirms=env.flag("RPC_PUBLISHER_CONFIRMS", default=False),
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            cache_ttl_ms=env.integer("CACHE_TTL_MS", 2000, low=0, high=3_600_000),
            rpc_transport="http" if transport == "http" else "amqp",
            episode_rpc_url=urls["EPISODE_RPC_URL"],
            stream_rpc_url=urls["STREAM_RPC_URL"],
        )


def _check_rpc_url(name: str, url: str | None) -> None:
    """A worker's base URL, ``http(s)://host[:port]``: required when RPC_TRANSPORT=http."""
    if url is None:
        raise ConfigError(f"RPC_TRANSPORT=http needs {name} (say, http://127.0.0.1:9111)")
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} must be a base URL without query or fragment, got {url!r}")
