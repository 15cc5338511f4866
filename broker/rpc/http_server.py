"""RPC over plain HTTP, the worker's side: ``POST /rpc/{method}`` for each method a worker
serves, through the worker's :class:`Router` (the same dispatch as over AMQP), under a SERVER
span and the same :class:`Handling` bookkeeping (metrics, request log) as an AMQP delivery.

The status mirrors the envelope (200 result, 400 bad request, 404 not found or unknown method,
500 handler failure, 504 deadline passed) for proxies and meshes that count by status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from broker.rpc.http_client import PATH
from broker.rpc.router import Reject
from broker.rpc.wire import CONTENT_TYPE, HANDLER_NS, SENT_AT_NS, TIMEOUT_MS, encode_error
from broker.rpc.wire import text_header_int as _int_header
from broker.rpc.worker import RpcWorker
from broker.telemetry.handling import Handling

log = logging.getLogger("broker._http")  # its name before broker/ had packages

# The status of each outcome; any other error (a HandlerError of another type) is a 500.
_STATUS = {
    "ok": 200,
    "bad_request": 400,
    "not_found": 404,
    "unknown_method": 404,
    "expired": 504,
    "late": 504,
    "unavailable": 503,
}


def rpc_http_app(worker: RpcWorker) -> web.Application:
    """``POST /rpc/{method}`` for each method ``worker`` serves, through its dispatch.

    One route per method, so that the route (and the SERVER span's name) names the method;
    any other ``/rpc/...`` gets the ``unknown_method`` reply AMQP would give.
    """
    app = web.Application()
    for method in worker.methods:
        app.router.add_post(PATH + method, _endpoint(worker, method, PATH + method))
    app.router.add_post(PATH + "{method}", _endpoint(worker, None, PATH + "{method}"))
    return app


def _endpoint(
    worker: RpcWorker, known: str | None, route: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of ``route``: ``known`` is its method, or None to take it from the path."""

    async def serve(request: web.Request) -> web.Response:
        received_ns = time.time_ns()
        method = known or request.match_info["method"]
        body = await request.read()
        parent = propagate.extract(request.headers)
        # The worker's own tracer (and so its tracer provider), as for its AMQP spans.
        with (
            worker.tracer.start_as_current_span(
                f"POST {route}",
                context=parent,
                kind=SpanKind.SERVER,
                start_time=received_ns,
                attributes=_server_attributes(request, method, route),
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            # A path is anyone's to invent: metrics label unknown methods as one series.
            Handling(method if known else "unknown", span, "http", 0) as handling,
        ):
            started = time.monotonic_ns()
            try:
                reply, handling.outcome = await worker.router.dispatch(
                    method,
                    body,
                    _int_header(request.headers, SENT_AT_NS),
                    _int_header(request.headers, TIMEOUT_MS),
                    received_ns,
                )
            except Reject as reject:
                # Over AMQP also dead-lettered; here the response is all there is.
                reply = encode_error(reject.error_type, reject.message)
                handling.outcome = reject.error_type
            if reply is None:  # the deadline passed while handling: the caller gave up
                reply = encode_error("late", "the deadline passed while handling")
            status = _STATUS.get(handling.outcome, 500)
            span.set_attribute("http.response.status_code", status)
            headers = {
                HANDLER_NS: str(time.monotonic_ns() - started),
                SENT_AT_NS: str(time.time_ns()),
            }
            return web.Response(
                body=reply, status=status, content_type=CONTENT_TYPE, headers=headers
            )

    return serve


def _server_attributes(request: web.Request, method: str, route: str) -> dict[str, Any]:
    """HTTP server attributes (stable semantic conventions) plus the RPC method."""
    attributes: dict[str, Any] = {
        "rpc.system": "http",
        "rpc.method": method,
        "http.request.method": "POST",
        "http.route": route,
        "url.path": request.path,
        "url.scheme": request.scheme,
        "network.protocol.name": "http",
        "network.protocol.version": f"{request.version.major}.{request.version.minor}",
        "http.request.body.size": request.content_length or 0,
    }
    if request.url.host:
        attributes["server.address"] = request.url.host
    if request.url.port:
        attributes["server.port"] = request.url.port
    if request.remote:
        attributes["client.address"] = request.remote
    return attributes


@asynccontextmanager
async def serving_rpc_http(worker: RpcWorker, host: str, port: int) -> AsyncIterator[None]:
    """Serve :func:`rpc_http_app` on ``host:port`` for the duration of the block.

    Leaving the block stops accepting and lets requests in progress finish (up to the
    worker's grace), before the AMQP side drains: stack it after the worker.
    """
    runner = web.AppRunner(
        rpc_http_app(worker),
        access_log=None,
        shutdown_timeout=worker.grace,  # the same drain budget as over AMQP
        # A caller that goes away cancels its handler (as over AMQP its cancel notice does).
        handler_cancellation=True,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info(
            "worker serving RPC over HTTP on %s:%d methods=%s",
            host,
            port,
            ",".join(worker.methods),
        )
        yield
    finally:
        await runner.cleanup()
