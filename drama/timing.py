"""Where each request's time went: ``Server-Timing``, the HTTP metrics, one log line a request.

``Server-Timing: db;dur=0.4, episode;dur=3.1, stream;dur=4.0, queue;dur=0.6, total;dur=8.2``
(milliseconds) shows in a browser's devtools the same breakdown a trace shows in Jaeger:
``db`` is drama-service's own queries, ``episode`` and ``stream`` the round trips of the two
RPCs as drama-service waited for them, ``queue`` the time the requests sat in RabbitMQ's queues
(measured by the workers), ``total`` the whole request inside drama-service.

Every response also names its trace in a W3C ``traceresponse`` header
(``00-<trace id>-<span id of the SERVER span>-<flags>``), which the player uses to fetch the
request's spans and draw them (web/, docs/player.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from opentelemetry import baggage, propagate, trace
from prometheus_client import Gauge, Histogram

from broker import BUCKETS, collect_timings, exemplar, request_logged
from episode.contract import LIST
from stream.contract import PLAYLIST, PRESIGN

log = logging.getLogger(__name__)

HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Requests served by drama-service, by route template, method and status.",
    ["route", "method", "status"],
    buckets=BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("http_server_requests_in_flight", "Requests being served now.")

DB_NS = web.RequestKey("db_ns", list)  # one mutable cell: nanoseconds spent in queries

_RPC_NAMES = {LIST: "episode", PRESIGN: "stream", PLAYLIST: "stream"}
# Scripts of another origin may read these (CORS); same-origin ones always can.
_EXPOSED = "Server-Timing, traceresponse"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def db_time(request: web.Request) -> AsyncIterator[None]:
    """Count the block as database time of the request."""
    started = time.perf_counter_ns()
    try:
        yield
    finally:
        cell = request.get(DB_NS)
        if cell is not None:
            cell[0] += time.perf_counter_ns() - started


def mark_synthetic(request: web.Request) -> None:
    """Load tests say so in W3C baggage (``synthetic=true``); the SERVER span then says it too,
    so that traces of load and of users can be told apart (the propagators decide, as for the
    trace context: ``OTEL_PROPAGATORS`` without ``baggage`` turns this off)."""
    if "baggage" in request.headers:
        context = propagate.extract(request.headers)
        if baggage.get_baggage("synthetic", context) == "true":
            trace.get_current_span().set_attribute("synthetic", True)
        # The load run's id, for `python -m loadtest analyze --run`; bounded, it is client input.
        run = baggage.get_baggage("loadtest.run", context)
        if run:
            trace.get_current_span().set_attribute("loadtest.run", str(run)[:64])


@web.middleware
async def server_timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter_ns()
    mark_synthetic(request)
    request[DB_NS] = [0]
    HTTP_IN_FLIGHT.inc()
    try:
        with collect_timings() as calls:
            response = await handler(request)
    finally:
        HTTP_IN_FLIGHT.dec()
    total_ns = time.perf_counter_ns() - started
    parts = {"db": request[DB_NS][0], "episode": 0, "stream": 0, "queue": 0}
    for call in calls:
        name = _RPC_NAMES.get(call.method, call.method)
        parts[name] = parts.get(name, 0) + call.round_trip_ns
        parts["queue"] += call.queue_wait_ns
    parts["total"] = total_ns
    response.headers["Server-Timing"] = ", ".join(
        f"{name};dur={ns / 1e6:.3f}" for name, ns in parts.items()
    )
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        # W3C Trace Context Level 2: the trace the request became part of, so that a page can
        # fetch it (the flags say whether it was sampled, i.e. whether there is one to fetch).
        response.headers["traceresponse"] = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )
    response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    resource = request.match_info.route.resource
    # Unknown paths share one label value: raw paths would make the series unbounded.
    route = resource.canonical if resource is not None else "unmatched"
    HTTP_DURATION.labels(route, request.method, str(response.status)).observe(
        total_ns / 1e9, exemplar()
    )
    if request_logged(response.status < 400, trace.get_current_span()):
        log.info(
            "http method=%s route=%s status=%d duration_ms=%.3f",
            request.method,
            route,
            response.status,
            total_ns / 1e6,
        )
    return response
