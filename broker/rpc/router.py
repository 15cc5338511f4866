"""A worker's methods, and the one dispatch every transport serves them through.

:class:`Router` is the seam between the transports and the handlers: the AMQP worker
(:mod:`broker.rpc.worker`), the HTTP endpoint (:mod:`broker.rpc.http_server`) and the in-memory
transport for tests (:mod:`broker.rpc.memory`) all call :meth:`Router.dispatch` with the
request's body and deadline, and get the reply body (protocol v1's envelope) and the outcome, or
a :class:`Reject`. What the transport does with a rejection differs (AMQP dead-letters it, HTTP
answers with a status); what counts as one does not.

Concerns around the handlers (fault injection today) are :data:`HandlerMiddleware`: functions
of ``(method, handler)`` that return the handler wrapped. They are applied once, when a method is
registered, so a request pays for a middleware only what the middleware itself does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from broker.errors import HandlerError
from broker.outages import RepeatedLog, dependency_unavailable
from broker.rpc.cancel import Cancellations
from broker.rpc.wire import encode_error, encode_result

Req = TypeVar("Req")

Handler = Callable[[Any], Awaitable[Any]]
# (method, handler) -> the handler wrapped; applied once per method, at registration.
HandlerMiddleware = Callable[[str, Handler], Handler]

log = logging.getLogger("broker._worker")  # the worker's lines, under the worker's name
_outages = RepeatedLog(log)


@dataclass(frozen=True, slots=True)
class Route(Generic[Req]):
    """How one method's requests are decoded, and who handles them (middlewares applied)."""

    request_type: type[Req]
    handler: Callable[[Req], Awaitable[Any]]


class Reject(Exception):
    """Dead-letter the request; reply with this error type if the caller can be reached."""

    def __init__(self, error_type: str, message: str, *, reply: bool = True) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.reply = reply


def unavailable_reply(method: str, exc: BaseException) -> tuple[bytes, str]:
    """The error reply ``unavailable`` (acked, not dead-lettered: the request was valid), and
    one log line per outage and method every few seconds, not a traceback per request."""
    _outages.warning(
        f"{method}:{type(exc).__name__}", f"rpc dependency unavailable method={method}", exc
    )
    return encode_error("unavailable", "a dependency of the worker is unavailable"), "unavailable"


class Router:
    """The methods one worker serves (``name`` is its queue, as error messages say it).

    ``middlewares`` wrap every handler, the first one outermost.
    """

    def __init__(self, name: str, middlewares: Sequence[HandlerMiddleware] = ()) -> None:
        self.name = name
        self._middlewares = tuple(middlewares)
        self._routes: dict[str, Route[Any]] = {}
        # The calls their callers gave up (broker/rpc/cancel.py): stopped, or never started.
        self.cancellations = Cancellations()

    def register(
        self, method: str, request_type: type[Req], handler: Callable[[Req], Awaitable[Any]]
    ) -> None:
        """Serve ``method``: decode requests as ``request_type`` and await ``handler`` on them."""
        wrapped: Handler = handler
        for middleware in reversed(self._middlewares):
            wrapped = middleware(method, wrapped)
        self._routes[method] = Route(request_type, wrapped)

    @property
    def methods(self) -> tuple[str, ...]:
        """The registered methods, in registration order."""
        return tuple(self._routes)

    async def dispatch(
        self,
        method: str,
        body: bytes,
        sent_at: int | None,
        timeout_ms: int | None,
        received_ns: int,
        *,
        correlation_id: str | None = None,
    ) -> tuple[bytes | None, str]:
        """Decode, run the handler, encode: the reply body (None when the deadline passed
        first, or the caller gave up: outcome ``late`` or ``cancelled``) and the outcome;
        raises :class:`Reject`."""
        if self.cancellations.noticed(correlation_id):
            return None, "cancelled"  # given up while it waited in the queue: never started
        route = self._routes.get(method)
        if route is None:
            raise Reject("unknown_method", f"no method {method!r} on {self.name}")
        remaining: float | None = None
        if sent_at is not None and timeout_ms is not None:
            remaining = (sent_at + timeout_ms * 1_000_000 - received_ns) / 1e9
            if remaining <= 0:
                raise Reject("expired", "deadline passed before delivery", reply=False)
        try:
            request = msgspec.json.decode(body, type=route.request_type)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise Reject("bad_request", f"malformed request: {exc}") from None
        try:
            async with asyncio.timeout(remaining) as scope:
                with self.cancellations.running(correlation_id, scope):
                    result = await route.handler(request)
        except TimeoutError:
            return None, "cancelled" if self.cancellations.noticed(correlation_id) else "late"
        except HandlerError as exc:
            return encode_error(exc.error_type, exc.message), exc.error_type
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker is being torn down
            # The handler itself raised CancelledError: without this the request would hold
            # a prefetch slot, unacked, until the channel closed.
            raise Reject("internal", "handler was cancelled") from None
        except Exception as exc:
            if dependency_unavailable(exc):  # an outage, not a bad request: answered, acked
                return unavailable_reply(method, exc)
            log.exception("rpc handler failed method=%s", method)
            raise Reject("internal", f"{type(exc).__name__} in handler") from exc
        try:
            return encode_result(result), "ok"
        except (TypeError, msgspec.EncodeError) as exc:
            raise Reject("internal", f"unencodable result: {exc}") from exc
