"""The caller's side of RPC, whatever the transport: the :class:`RpcClient` interface, and
the reading of a reply (protocol v1's envelope) into a result or an error.

The transports: :class:`broker.rpc.amqp_client.AmqpRpcClient` (RabbitMQ),
:class:`broker.rpc.http_client.HttpRpcClient` (HTTP) and
:class:`broker.rpc.memory.InMemoryRpcClient` (a worker's router in the same process, for tests).
Each puts the same middlewares around its round trip (:mod:`broker.rpc.calls`).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import msgspec

from broker.errors import RpcNotFound, RpcRemoteError, RpcRemoteUnavailable, RpcUnroutable
from broker.rpc.wire import ErrorBody, Reply

T = TypeVar("T")


class RpcClient(Protocol):
    """Calls a method on a remote worker and returns its decoded result.

    Raises a subclass of :class:`RpcError`; never waits longer than the timeout.
    """

    async def call(
        self,
        method: str,
        request: Any,
        result_type: type[T],
        *,
        timeout: float | None = None,
    ) -> T:
        """Send ``request`` (JSON-encodable) to ``method``; decode the result as ``result_type``."""
        ...

    async def ping(self) -> None:
        """Raise :class:`RpcUnavailable` unless calls can be sent now."""
        ...


def decode_reply(method: str, body: bytes, result_type: type[T]) -> T:
    try:
        reply: Reply[T] = msgspec.json.decode(
            body,
            type=Reply[result_type],  # type: ignore[valid-type]
        )
    except msgspec.DecodeError as exc:
        raise RpcRemoteError(method, "bad_reply", f"undecodable reply: {exc}") from None
    if reply.error is not None:
        if reply.error.type == "unroutable":  # answered for the alternate exchange
            raise RpcUnroutable(method, reply.error.message)
        raise remote_error(method, reply.error)
    if reply.result is None:
        raise RpcRemoteError(method, "bad_reply", "reply has neither result nor error")
    return reply.result


def remote_error(method: str, error: ErrorBody) -> RpcRemoteError:
    """The exception of a worker's error reply, whatever the transport."""
    kinds: dict[str, type[RpcRemoteError]] = {
        "not_found": RpcNotFound,
        "unavailable": RpcRemoteUnavailable,
    }
    return kinds.get(error.type, RpcRemoteError)(method, error.type, error.message)
