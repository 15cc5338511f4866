"""The shared runtime of drama-streaming: RPC over RabbitMQ (protocol v1), tracing, settings.

Callers use an :class:`RpcClient` (the AMQP transport is :class:`AmqpRpcClient`, the HTTP one
:class:`HttpRpcClient`); workers serve methods with :class:`RpcWorker`, over HTTP too with
:func:`serving_rpc_http`. Errors are described in :mod:`broker._errors`.
"""

from ._cache import ReadCache
from ._client import AmqpRpcClient, RpcClient
from ._db import SqlStore, open_engine
from ._dependency import RepeatedLog, dependency_unavailable
from ._env import Env
from ._errors import (
    BadRequest,
    ConfigError,
    HandlerError,
    NotFound,
    RpcError,
    RpcNotFound,
    RpcRemoteError,
    RpcRemoteUnavailable,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
    Unavailable,
)
from ._faults import FaultAck, FaultRule, InjectedFault, db_delay, send_fault_rule
from ._guard import GuardedRpcClient
from ._http import (
    HttpRpcClient,
    WorkerSettings,
    rpc_http_app,
    serving_rpc_http,
    serving_worker,
)
from ._metrics import BUCKETS, exemplar, metrics_app, metrics_handler, serving_metrics
from ._runtime import configure_logging, redact_url, service_main, stop_event, use_event_loop
from ._spans import LeanSpan, LeanTracerProvider
from ._telemetry import (
    CallTiming,
    PresetTraceIds,
    collect_timings,
    configure_tracing,
    instrument_engine,
    recorded_span,
    request_logged,
    set_request_log,
)
from ._tls import amqp_url, amqp_url_from_env
from ._wire import Topology
from ._worker import QueueType, RpcWorker

__all__ = [
    "BUCKETS",
    "AmqpRpcClient",
    "BadRequest",
    "CallTiming",
    "ConfigError",
    "Env",
    "FaultAck",
    "FaultRule",
    "GuardedRpcClient",
    "HandlerError",
    "HttpRpcClient",
    "InjectedFault",
    "LeanSpan",
    "LeanTracerProvider",
    "NotFound",
    "PresetTraceIds",
    "QueueType",
    "ReadCache",
    "RepeatedLog",
    "RpcClient",
    "RpcError",
    "RpcNotFound",
    "RpcRemoteError",
    "RpcRemoteUnavailable",
    "RpcTimeout",
    "RpcUnavailable",
    "RpcUnroutable",
    "RpcWorker",
    "SqlStore",
    "Topology",
    "Unavailable",
    "WorkerSettings",
    "amqp_url",
    "amqp_url_from_env",
    "collect_timings",
    "configure_logging",
    "configure_tracing",
    "db_delay",
    "dependency_unavailable",
    "exemplar",
    "instrument_engine",
    "metrics_app",
    "metrics_handler",
    "open_engine",
    "recorded_span",
    "redact_url",
    "request_logged",
    "rpc_http_app",
    "send_fault_rule",
    "service_main",
    "serving_metrics",
    "serving_rpc_http",
    "serving_worker",
    "set_request_log",
    "stop_event",
    "use_event_loop",
]
