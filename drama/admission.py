"""Admission control and the request's deadline: two aiohttp middlewares.

``admission(limit)`` bounds the API requests in flight: past ``limit`` a request is answered
503 with ``Retry-After`` at once, before it costs a query or an RPC. Under twice the capacity
the requests admitted still finish in time, and the rest learn within milliseconds that they
should retry, instead of every request queueing until all time out (docs/rpc.md, "Overload").
Probes, metrics and the document are never shed.

``deadline(budget)`` gives each API request one budget (``REQUEST_TIMEOUT_MS``): every RPC gets
what remains of it (:func:`remaining`), and a request still running at its deadline is
cancelled and answered 504. With aiohttp's ``handler_cancellation`` a client that goes away
cancels its handler, and so its RPCs, the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

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


def _guarded(request: web.Request) -> bool:
    return request.path.startswith(_GUARDED)


def admission(limit: int) -> Middleware:
    """At most ``limit`` API requests in flight; 0 means no bound."""
    in_flight = 0

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        if not limit or not _guarded(request):
            return await handler(request)
        if in_flight >= limit:
            HTTP_SHED.inc()
            return problem(
                503,
                "overloaded",
                "Overloaded",
                f"more than {limit} requests in flight; retry later",
                request.path,
            )
        in_flight += 1
        try:
            return await handler(request)
        finally:
            in_flight -= 1

    return admit


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
