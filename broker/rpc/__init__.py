"""RPC between the services (protocol v1): the wire format, the errors, the callers' transports
(:class:`AmqpRpcClient`, :class:`HttpRpcClient`, :class:`InMemoryRpcClient` for tests), the
worker (:class:`RpcWorker`) and the :class:`Router` every worker-side transport dispatches
through, the guards, dead letters, transit measurement and fault injection.

Concerns around a call are middlewares of :mod:`broker.rpc.calls`; around a handler,
:data:`HandlerMiddleware` of :mod:`broker.rpc.router`.
"""

from broker.errors import (
    BadRequest,
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
from broker.rpc.amqp_client import AmqpRpcClient
from broker.rpc.calls import Call, CallMiddleware
from broker.rpc.client import RpcClient
from broker.rpc.faults import FaultAck, FaultRule, InjectedFault, db_delay, send_fault_rule
from broker.rpc.guard import GuardedRpcClient
from broker.rpc.http_client import HttpRpcClient
from broker.rpc.http_server import rpc_http_app, serving_rpc_http
from broker.rpc.memory import InMemoryRpcClient
from broker.rpc.router import HandlerMiddleware, Reject, Router
from broker.rpc.wire import Topology
from broker.rpc.worker import QueueType, RpcWorker

__all__ = [
    "AmqpRpcClient",
    "BadRequest",
    "Call",
    "CallMiddleware",
    "FaultAck",
    "FaultRule",
    "GuardedRpcClient",
    "HandlerError",
    "HandlerMiddleware",
    "HttpRpcClient",
    "InMemoryRpcClient",
    "InjectedFault",
    "NotFound",
    "QueueType",
    "Reject",
    "Router",
    "RpcClient",
    "RpcError",
    "RpcNotFound",
    "RpcRemoteError",
    "RpcRemoteUnavailable",
    "RpcTimeout",
    "RpcUnavailable",
    "RpcUnroutable",
    "RpcWorker",
    "Topology",
    "Unavailable",
    "db_delay",
    "rpc_http_app",
    "send_fault_rule",
    "serving_rpc_http",
]
