"""Admission control and the request's deadline: two aiohttp middlewares.

:class:`Admission` bounds the API requests in flight: past the bound a request is answered
503 with ``Retry-After`` at once, before it costs a query or an RPC. Under twice the capacity
the requests admitted still finish in time, and the rest learn within milliseconds that they
should retry, instead of every request queueing until all time out (docs/rpc.md, "Overload").
Probes, metrics and the document are never shed.

With a lag target (``HTTP_ADMISSION_LAG_MS``) the bound also adapts: a timer measures how late
the event loop runs it, and while that lag is above the target the bound shrinks (by a tenth a
tick, down to a floor), then grows back by one a tick. Loop lag is what a shed request waits
before it can be answered, so holding the lag keeps the 503s fast when the cores are saturated
by the admitted work (docs/rpc.md, "Sizing the bound").

``deadline(budget)`` gives each API request one budget (``REQUEST_TIMEOUT_MS``): every RPC gets
what remains of it (:func:`remaining`), and a request still running at its deadline is
cancelled and answered 504. With aiohttp's ``handler_cancellation`` a client that goes away
cancels its handler, and so its RPCs, the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter, Gauge

from broker import RpcTimeout

from .problems import problem

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The routes that do the work; probes, /metrics and /openapi.json pass untouched.
_GUARDED = ("/dramas",)
_GRACE = 0.1  # seconds
_DEADLINE = web.RequestKey("deadline", float)  # the loop time the request must be answered by

HTTP_SHED = Counter(
    "http_server_requests_shed",
    "API requests answered 503 at once because the bound on requests in flight was reached.",
)


HTTP_LIMIT = Gauge(
    "http_server_admission_limit",
    "The bound on API requests in flight now (below HTTP_MAX_IN_FLIGHT while adapting to lag).",
)


def _guarded(request: web.Request) -> bool:
    return request.path.startswith(_GUARDED)


class Admission:
    """The bound on API requests in flight: :attr:`middleware` applies it, :meth:`adapting`
    (an ``app.cleanup_ctx``) runs the lag timer when a target is set.

    ``limit`` 0 means no bound. ``lag_target`` (seconds, 0: a fixed bound) is the event-loop
    lag above which the bound shrinks, never below ``floor``.
    """

    TICK = 0.02  # seconds between two lag samples

    def __init__(self, limit: int, lag_target: float = 0.0, floor: int = 4) -> None:
        self.ceiling = limit
        self.limit = limit
        self.lag_target = lag_target
        self.floor = min(floor, limit)
        self.in_flight = 0
        HTTP_LIMIT.set(limit)

    def observe(self, lag: float) -> None:
        """One lag sample: shrink by a tenth above the target, else grow by one."""
        if lag > self.lag_target:
            self.limit = max(self.floor, int(self.limit * 0.9))
        elif self.limit < self.ceiling:
            self.limit += 1
        HTTP_LIMIT.set(self.limit)

    async def adapting(self, app: web.Application) -> AsyncIterator[None]:
        """``app.cleanup_ctx``: the lag timer while the app runs (nothing without a target)."""
        task = None
        if self.ceiling and self.lag_target:
            task = asyncio.create_task(self._sample(), name="admission lag")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK
            await asyncio.sleep(self.TICK)
            self.observe(loop.time() - due)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.ceiling or not _guarded(request):
            return await handler(request)
        if self.in_flight >= self.limit:
            HTTP_SHED.inc()
            return problem(
                503,
                "overloaded",
                "Overloaded",
                f"more than {self.limit} requests in flight; retry later",
                request.path,
            )
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1


def deadline(budget: float) -> Middleware:
    """Every API request is answered within ``budget`` seconds (504 past it)."""

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _guarded(request):
            return await handler(request)
        loop = asyncio.get_running_loop()
        request[_DEADLINE] = loop.time() + budget
        try:
            # A little after the deadline the RPCs were given: a call timing out at it says
            # which method did (its own 504); this one catches the rest (a slow query).
            async with asyncio.timeout(budget + _GRACE):
                return await handler(request)
        except TimeoutError:
            raise RpcTimeout("request", budget) from None

    return bounded


def remaining(request: web.Request, cap: float) -> float:
    """Seconds left of the request's budget, at most ``cap`` (an RPC's own timeout)."""
    deadline_at = request.get(_DEADLINE)
    if deadline_at is None:
        return cap
    left: float = deadline_at - asyncio.get_running_loop().time()
    return min(cap, max(left, 0.001))
