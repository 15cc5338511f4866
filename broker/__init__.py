"""The shared runtime of drama-streaming, by concern.

- :mod:`broker.rpc`: RPC over RabbitMQ (protocol v1) and over HTTP, the worker and its router,
  an in-memory transport for tests;
- :mod:`broker.telemetry`: tracing, spans, OTLP export, metrics, request logs;
- :mod:`broker.service`: settings, the process runtime, the database engine, the cache.

This package exports what the services (drama, episode, stream, catalog) use, and nothing else
(tests/test_broker_layout.py holds the list); tests and tools import from the subpackages.
"""

from typing import TYPE_CHECKING, Any

from broker.errors import (
    BadRequest,
    ConfigError,
    HandlerError,
    NotFound,
    RpcNotFound,
    RpcRemoteError,
    RpcRemoteUnavailable,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
)
from broker.outages import RepeatedLog, dependency_unavailable
from broker.rpc import AmqpRpcClient, GuardedRpcClient, HttpRpcClient, RpcClient, RpcWorker
from broker.service import (
    Env,
    ReadCache,
    WorkerSettings,
    amqp_url_from_env,
    redact_url,
    service_main,
    serving_worker,
    stop_event,
)
from broker.telemetry import (
    BUCKETS,
    PresetTraceIds,
    collect_timings,
    exemplar,
    metrics_handler,
    recorded_span,
    request_logged,
)

if TYPE_CHECKING:
    from broker.service import SqlStore


def __getattr__(name: str) -> Any:
    """``SqlStore`` on first use: stream-service, which has no database, never loads
    SQLAlchemy (broker/service/__init__.py)."""
    if name == "SqlStore":
        from broker import service  # noqa: PLC0415 - on first use

        return service.SqlStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUCKETS",
    "AmqpRpcClient",
    "BadRequest",
    "ConfigError",
    "Env",
    "GuardedRpcClient",
    "HandlerError",
    "HttpRpcClient",
    "NotFound",
    "PresetTraceIds",
    "ReadCache",
    "RepeatedLog",
    "RpcClient",
    "RpcNotFound",
    "RpcRemoteError",
    "RpcRemoteUnavailable",
    "RpcTimeout",
    "RpcUnavailable",
    "RpcUnroutable",
    "RpcWorker",
    "SqlStore",
    "WorkerSettings",
    "amqp_url_from_env",
    "collect_timings",
    "dependency_unavailable",
    "exemplar",
    "metrics_handler",
    "recorded_span",
    "redact_url",
    "request_logged",
    "service_main",
    "serving_worker",
    "stop_event",
]
