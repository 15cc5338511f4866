"""Prometheus metrics of the request path (names and labels: docs/design.md, "Metrics").

Registered once per process in prometheus-client's default registry, like the process_*
metrics it exports itself. Histograms take a ``trace_id`` exemplar when the current span is
sampled, so that Grafana can jump from a slow bucket to the trace; exemplars are exposed in the
OpenMetrics format, which Prometheus asks for. Labels stay bounded: route templates, method
names and outcome names, never ids or raw paths.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web
from opentelemetry import trace
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

# Sub-millisecond (a queue hop on one host) to 10 s (past any timeout here).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

RPC_CLIENT_DURATION = Histogram(
    "rpc_client_duration_seconds",
    "RPC calls as the caller waited for them, by method and outcome.",
    ["method", "outcome"],
    buckets=BUCKETS,
)
RPC_OVERHEAD = Histogram(
    "rpc_overhead_seconds",
    "Round trip minus the worker's handler time: queue, broker and network (skew-free).",
    ["method"],
    buckets=BUCKETS,
)
RPC_CLIENT_IN_FLIGHT = Gauge(
    "rpc_client_calls_in_flight", "Calls waiting for their reply.", ["method"]
)
RPC_CLIENT_ERRORS = Counter(
    "rpc_client_errors", "Failed calls, by method and error type.", ["method", "error_type"]
)
RPC_BREAKER_STATE = Gauge(
    "rpc_client_breaker_state",
    "The caller's breaker per method: 0 closed, 1 half-open (probing), 2 open (failing fast).",
    ["method"],
)
RPC_QUEUE_WAIT = Histogram(
    "rpc_queue_wait_seconds",
    "Time requests sat in the queue: delivery minus x-sent-at-ns, measured by the worker.",
    ["method"],
    buckets=BUCKETS,
)
RPC_QUEUE_TRANSIT = Histogram(
    "rpc_queue_transit_seconds",
    "The wire's share of the queue wait: to the broker and from it (estimated, see "
    "docs/analysis.md).",
    ["method"],
    buckets=BUCKETS,
)
RPC_QUEUE_DWELL = Histogram(
    "rpc_queue_dwell_seconds",
    "The queue's share of the queue wait: queue wait minus transit.",
    ["method"],
    buckets=BUCKETS,
)
RPC_BROKER_ROUND_TRIP = Gauge(
    "rpc_broker_round_trip_seconds",
    "This process's round trip to the broker (the least of its last probes).",
)
RPC_HANDLER_DURATION = Histogram(
    "rpc_handler_duration_seconds",
    "Requests handled by a worker, by method and outcome.",
    ["method", "outcome"],
    buckets=BUCKETS,
)
RPC_HANDLER_IN_FLIGHT = Gauge(
    "rpc_handler_in_flight", "Requests a worker is handling now.", ["method"]
)
RPC_DEAD_LETTERED = Counter(
    "rpc_dead_lettered",
    "Requests a worker rejected to the dead-letter exchange.",
    ["queue", "reason"],
)
RPC_CANCEL_NOTICES = Counter(
    "rpc_server_cancel_notices",
    "Notices that a caller gave up a call, heard by a worker of this queue (broker/rpc/cancel.py).",
    ["queue"],
)


@functools.lru_cache(maxsize=4096)
def labelled(metric: M, *values: str) -> M:
    """``metric.labels(*values)``, looked up once: ``labels()`` takes a lock and builds its key
    on every call, five times a call on the RPC path. The children stay valid as long as nobody
    removes them from their metric (nothing here does); label values are bounded anyway."""
    return metric.labels(*values)


def exemplar(span: trace.Span | None = None) -> dict[str, str] | None:
    """``{"trace_id": ...}`` of ``span`` (by default the current one) when it is sampled, else
    None."""
    context = (span if span is not None else trace.get_current_span()).get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return {"trace_id": format(context.trace_id, "032x")}
    return None


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: text format, or OpenMetrics (with exemplars) when asked for."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = web.Response(body=encode(REGISTRY))
    response.headers["Content-Type"] = content_type
    return response


def metrics_app(ready: Callable[[], bool] | None = None) -> web.Application:
    """The workers' ``METRICS_PORT``: ``/metrics``, and the probes ``/healthz`` and ``/readyz``.

    ``/healthz`` answers while the event loop runs; ``/readyz`` answers 200 while ``ready()``
    is true (a worker consuming on an open channel) and 503 otherwise.
    """

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        if ready is None or ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def serving_metrics(
    host: str, port: int, ready: Callable[[], bool] | None = None
) -> AsyncIterator[None]:
    """Serve :func:`metrics_app` on ``host:port`` for the duration of the block."""
    runner = web.AppRunner(metrics_app(ready), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
