"""The shared runtime of drama-streaming, by concern.

- :mod:`broker.rpc`: RPC over RabbitMQ (protocol v1) and over HTTP, the worker and its router,
  an in-memory transport for tests;
- :mod:`broker.telemetry`: tracing, spans, OTLP export, metrics, request logs;
- :mod:`broker.service`: settings, the process runtime, the database engine, the cache.

This package exports what the services (drama, episode, stream, catalog) use, and nothing else
(tests/test_broker_layout.py holds the list); tests and tools import from the subpackages.
"""

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
    SqlStore,
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
