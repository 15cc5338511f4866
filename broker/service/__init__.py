"""A service process: settings from the environment (:class:`Env`, :class:`WorkerSettings`),
``main`` and the event loop (:func:`service_main`), the database engine, the read cache, the
AMQP URL with TLS."""

from broker.errors import ConfigError
from broker.service.cache import ReadCache
from broker.service.db import SqlStore, open_engine
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
