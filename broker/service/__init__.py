"""A service process: settings from the environment (:class:`Env`, :class:`WorkerSettings`),
``main`` and the event loop (:func:`service_main`), the database engine, the read cache, the
AMQP URL with TLS."""

from typing import TYPE_CHECKING, Any

from broker.errors import ConfigError
from broker.service.cache import ReadCache
from broker.service.env import Env
from broker.service.runtime import (
    configure_logging,
    redact_url,
    service_main,
    stop_event,
    use_event_loop,
)
from broker.service.tls import amqp_url, amqp_url_from_env
from broker.service.worker import WorkerSettings, serving_worker

if TYPE_CHECKING:
    from broker.service.db import SqlStore, open_engine

# SQLAlchemy (0.4 s to import) only for the services with a database: stream-service has none.
_LAZY = {"SqlStore", "open_engine"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from broker.service import db  # noqa: PLC0415 - on first use

        return getattr(db, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "Env",
    "ReadCache",
    "SqlStore",
    "WorkerSettings",
    "amqp_url",
    "amqp_url_from_env",
    "configure_logging",
    "open_engine",
    "redact_url",
    "service_main",
    "serving_worker",
    "stop_event",
    "use_event_loop",
]
