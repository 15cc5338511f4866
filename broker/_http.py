"""RPC over plain HTTP: the same methods, bodies and errors as over RabbitMQ, one network hop.

Beside the AMQP transport, so that the same request can run through the queue or through the
network and the two be compared. ``POST /rpc/{method}`` carries the method's request as JSON
(the AMQP message body); the response body is the AMQP reply envelope, ``{"result": ...}`` or
``{"error": {"type", "message"}}``. Headers carry what the AMQP properties and headers carry:
``traceparent``/``tracestate``/``baggage``, ``x-sent-at-ns`` and ``x-timeout-ms`` on the
request, ``x-handler-ns`` and ``x-sent-at-ns`` on the response. The worker side runs the
worker's one dispatch function (:meth:`RpcWorker._dispatch`), so a method behaves the same
whichever way it is reached.

The status mirrors the envelope (200 result, 400 bad request, 404 not found or unknown method,
500 handler failure, 504 deadline passed) for proxies and meshes that count by status; the
caller decodes the envelope first and falls back on the status only when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from ._client import observed_call, remote_error
from ._env import Env
from ._errors import (
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
)
from ._handling import Handling
from ._metrics import serving_metrics
from ._telemetry import TRACER, CallTiming
from ._tls import amqp_url_from_env
from ._wire import (
    CONTENT_TYPE,
    HANDLER_NS,
    SENT_AT_NS,
    TIMEOUT_MS,
    ErrorBody,
    encode,
    encode_error,
)
from ._worker import QueueType, RpcWorker, _Reject

T = TypeVar("T")

log = logging.getLogger(__name__)

PATH = "/rpc/"

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


class _ErrorReply(msgspec.Struct, frozen=True):
    error: ErrorBody


# -- the caller's side ----------------------------------------------------------------------


class HttpRpcClient:
    """:class:`RpcClient` over HTTP: ``POST {base}/rpc/{method}`` on one pooled session.

    ``urls`` maps method prefixes to base URLs (``{"episode.": "http://episode:9111"}``); a
    method goes to the longest prefix it starts with. Errors are the AMQP transport's: a
    refused or dropped connection, or a 5xx that is no reply of a worker (a proxy's), is
    :class:`RpcUnavailable` at once; no reply in time is :class:`RpcTimeout`; a method no
    prefix covers is :class:`RpcUnroutable`. Use as ``async with HttpRpcClient(urls) as c:``.

    ``max_connections`` bounds the keep-alive connections to each worker address; a call
    waiting for one counts against its timeout.
    """

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        timeout: float = 3.0,
        max_connections: int = 100,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._routes = sorted(
            ((prefix, base.rstrip("/")) for prefix, base in urls.items()),
            key=lambda route: len(route[0]),
            reverse=True,
        )
        self._timeout = timeout
        self._max_connections = max_connections
        self._tracer = trace.get_tracer(TRACER, tracer_provider=tracer_provider)
        self._tracer_provider = tracer_provider
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpRpcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the session; connections are made on first use and then kept alive."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._max_connections),
            # Each call is bounded by its own timeout (below), not by a session-wide one.
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        """Close the session and its connections; calls in progress fail."""
        if self._session is not None:
            await self._session.close()

    async def ping(self) -> None:
        # No connection to check: each worker is reached (or not) call by call.
        if self._session is None or self._session.closed:
            raise RpcUnavailable("*", "the HTTP client is closed")

    def url(self, method: str) -> str | None:
        """Where ``method`` is sent, or None when no prefix covers it."""
        for prefix, base in self._routes:
            if method.startswith(prefix):
                return f"{base}{PATH}{urllib.parse.quote(method, safe='')}"
        return None

    async def call(
        self,
        method: str,
        request: Any,
        result_type: type[T],
        *,
        timeout: float | None = None,
    ) -> T:
        timeout = self._timeout if timeout is None else timeout
        url = self.url(method)
        attributes: dict[str, Any] = {
            "rpc.system": "http",
            "rpc.method": method,
            "http.request.method": "POST",
            "network.protocol.name": "http",
            "network.transport": "tcp",
        }
        if url is not None:
            parts = urllib.parse.urlsplit(url)
            attributes["url.full"] = url
            attributes["server.address"] = parts.hostname or ""
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
        return await observed_call(
            self._tracer,
            method,
            attributes,
            lambda: self._round_trip(method, url, request, timeout),
            result_type,
            tracer_provider=self._tracer_provider,
        )

    async def _round_trip(
        self, method: str, url: str | None, request: Any, timeout: float
    ) -> tuple[bytes, CallTiming]:
        if url is None:
            raise RpcUnroutable(method, "no RPC URL is configured for this method")
        if self._session is None or self._session.closed:
            raise RpcUnavailable(method, "the HTTP client is closed")
        body = encode(request)
        headers = {
            "Content-Type": CONTENT_TYPE,
            SENT_AT_NS: str(time.time_ns()),
            TIMEOUT_MS: str(round(timeout * 1000)),
        }
        propagate.inject(headers)  # the CLIENT span is current: the worker's SERVER span's parent
        started = time.monotonic_ns()
        try:
            async with (
                asyncio.timeout(timeout),
                self._session.post(url, data=body, headers=headers) as response,
            ):
                reply = await response.read()
        except TimeoutError:
            raise RpcTimeout(method, timeout) from None
        except aiohttp.ClientError as exc:  # refused, reset, dropped mid-reply
            raise RpcUnavailable(method, f"{url}: {exc!r}") from exc
        round_trip_ns = time.monotonic_ns() - started
        trace.get_current_span().set_attribute("http.response.status_code", response.status)
        if response.status != 200:
            _raise_for(method, url, response.status, reply, timeout)
        timing = CallTiming(
            method=method,
            round_trip_ns=round_trip_ns,
            handler_ns=_int_header(response.headers, HANDLER_NS) or 0,
            queue_wait_ns=0,  # no queue on this path; round trip - handler is the network
            reply_wait_ns=0,
        )
        return reply, timing


def _raise_for(method: str, url: str, status: int, body: bytes, timeout: float) -> None:
    """The error of a non-200 response: the worker's own when it sent one."""
    if status == 504:
        raise RpcTimeout(method, timeout)
    try:
        error = msgspec.json.decode(body, type=_ErrorReply).error
    except msgspec.DecodeError:
        pass
    else:
        raise remote_error(method, error)
    # No envelope: not a worker's answer (a proxy's, a server going away, the wrong port).
    if status >= 500:
        raise RpcUnavailable(method, f"HTTP {status} from {url}")
    if status == 404:
        raise RpcUnroutable(method, f"no RPC endpoint at {url}")
    raise RpcRemoteError(method, "bad_reply", f"HTTP {status} without a reply from {url}")


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


# -- the worker's side ----------------------------------------------------------------------


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
            worker._tracer.start_as_current_span(
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
                reply, handling.outcome = await worker._dispatch(
                    method,
                    body,
                    _int_header(request.headers, SENT_AT_NS),
                    _int_header(request.headers, TIMEOUT_MS),
                    received_ns,
                )
            except _Reject as reject:
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
        shutdown_timeout=worker._grace,  # the same drain budget as over AMQP
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


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What every worker service reads alike: its broker and consumer, where it serves
    ``/metrics`` and the probes, and RPC over HTTP (off unless a port is set)."""

    amqp_url: str = field(repr=False)
    prefetch: int
    metrics_port: int
    faults_enabled: bool = False
    # Replies confirmed by the broker before their request is acked (docs/rpc.md).
    reply_confirms: bool = False
    queue_type: QueueType = "classic"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    rpc_http_host: str = "0.0.0.0"  # noqa: S104 - called from other containers
    rpc_http_port: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env, *, prefetch: int, metrics_port: int) -> WorkerSettings:
        """The variables, with this service's defaults for ``PREFETCH`` and ``METRICS_PORT``."""
        queue_type = env.choice("RPC_QUEUE_TYPE", "classic", ("classic", "quorum"))
        return cls(
            amqp_url=amqp_url_from_env(env),
            prefetch=env.integer("PREFETCH", prefetch, low=1, high=65535),
            metrics_port=env.integer("METRICS_PORT", metrics_port, low=1, high=65535),
            faults_enabled=env.flag("FAULTS_ENABLED", default=False),
            reply_confirms=env.flag("RPC_REPLY_CONFIRMS", default=False),
            queue_type="quorum" if queue_type == "quorum" else "classic",
            metrics_host=env.text("METRICS_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_host=env.text("RPC_HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_port=env.integer("RPC_HTTP_PORT", 0, low=1, high=65535) or None,
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )

    def rpc_worker(self, queue: str, service: str | None = None) -> RpcWorker:
        """The worker of ``queue`` as these settings say; register its methods, then serve it
        with :func:`serving_worker`. ``service`` names its broker connection."""
        instance = f"{socket.gethostname()}-{os.getpid()}"
        return RpcWorker(
            self.amqp_url,
            queue,
            connection_name=f"{service} {queue} {instance}" if service else None,
            prefetch=self.prefetch,
            queue_type=self.queue_type,
            faults=self.faults_enabled,
            publisher_confirms=self.reply_confirms,
        )


@asynccontextmanager
async def serving_worker(worker: RpcWorker, settings: WorkerSettings) -> AsyncIterator[None]:
    """A worker's process, for the block: ``/metrics`` and the probes on the metrics port
    (ready while it consumes), the worker itself, and its methods over HTTP when
    ``RPC_HTTP_PORT`` is set. HTTP is entered after the worker, so left first: it drains
    before the queue does.
    """
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            serving_metrics(settings.metrics_host, settings.metrics_port, lambda: worker.ready)
        )
        await stack.enter_async_context(worker)
        if settings.rpc_http_port is not None:
            await stack.enter_async_context(
                serving_rpc_http(worker, settings.rpc_http_host, settings.rpc_http_port)
            )
        yield
