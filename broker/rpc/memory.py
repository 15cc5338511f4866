"""An :class:`RpcClient` that calls a worker's :class:`Router` in this process: for fast tests.

No broker, no network: a call encodes its request as protocol v1 does, carries the same
deadline (``x-sent-at-ns`` and ``x-timeout-ms``, as numbers), goes through the same
:meth:`Router.dispatch` as a delivery over AMQP or a POST over HTTP, and its reply is decoded
from the same envelope, through the same call middlewares (:mod:`broker.rpc.calls`). So a unit
test exercises the protocol, the errors and the deadlines of a method without a process.

What differs from AMQP, by necessity: a method the router does not serve is
:class:`RpcUnroutable` at once (the broker would return the request); a request the worker would
dead-letter without a reply (deadline passed before delivery) or answer too late is
:class:`RpcTimeout`, which is what the caller over AMQP gets at its deadline.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from opentelemetry import trace

from broker.errors import RpcTimeout, RpcUnavailable, RpcUnroutable
from broker.rpc.calls import Call, call_chain
from broker.rpc.router import Reject, Router
from broker.rpc.wire import encode, encode_error
from broker.telemetry.handling import Handling
from broker.telemetry.tracing import TRACER, CallTiming

T = TypeVar("T")


class InMemoryRpcClient:
    """:class:`RpcClient` over a :class:`Router` (``worker.router``, or one made for the test).

    Use as ``async with InMemoryRpcClient(router) as client:`` (or without ``async with``: there
    is nothing to open).
    """

    def __init__(
        self,
        router: Router,
        *,
        timeout: float = 3.0,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.router = router
        self._timeout = timeout
        self._open = True
        tracer = trace.get_tracer(TRACER, tracer_provider=tracer_provider)
        self._call = call_chain(tracer, tracer_provider, self._round_trip)

    async def __aenter__(self) -> InMemoryRpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Calls made from now on fail with :class:`RpcUnavailable`."""
        self._open = False

    async def ping(self) -> None:
        if not self._open:
            raise RpcUnavailable("*", "the in-memory client is closed")

    async def call(
        self,
        method: str,
        request: Any,
        result_type: type[T],
        *,
        timeout: float | None = None,
    ) -> T:
        timeout = self._timeout if timeout is None else timeout
        attributes = {"rpc.system": "memory", "rpc.method": method}
        result: T = await self._call(Call(method, request, result_type, timeout, attributes))
        return result

    async def _round_trip(self, call: Call) -> tuple[bytes, CallTiming]:
        method, timeout = call.method, call.timeout
        if not self._open:
            raise RpcUnavailable(method, "the in-memory client is closed")
        if method not in self.router.methods:
            raise RpcUnroutable(method, "no worker queue is bound to this method")
        body = encode(call.request)  # as over the wire: what does not encode fails here
        sent_at = time.time_ns()
        started = time.monotonic_ns()
        try:
            async with asyncio.timeout(timeout):
                reply = await self._serve(method, body, sent_at, round(timeout * 1000))
        except TimeoutError:
            raise RpcTimeout(method, timeout) from None
        if reply is None:  # dead-lettered unanswered, or answered after the deadline
            raise RpcTimeout(method, timeout)
        round_trip_ns = time.monotonic_ns() - started
        timing = CallTiming(method, round_trip_ns, round_trip_ns, 0, 0)
        return reply, timing

    async def _serve(self, method: str, body: bytes, sent_at: int, timeout_ms: int) -> bytes | None:
        """The worker's side: the router's dispatch, under the worker's request bookkeeping."""
        received_ns = time.time_ns()
        with Handling(method, trace.get_current_span(), "memory", 0) as handling:
            try:
                reply, handling.outcome = await self.router.dispatch(
                    method, body, sent_at, timeout_ms, received_ns
                )
            except Reject as reject:
                handling.outcome = reject.error_type
                if not reject.reply:
                    return None
                return encode_error(reject.error_type, reject.message)
            return reply
