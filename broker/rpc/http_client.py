"""RPC over plain HTTP, the caller's side: the same methods, bodies and errors as over
RabbitMQ, one network hop (the worker's side is :mod:`broker.rpc.http_server`).

Beside the AMQP transport, so that the same request can run through the queue or through the
network and the two be compared. ``POST /rpc/{method}`` carries the method's request as JSON
(the AMQP message body); the response body is the AMQP reply envelope, ``{"result": ...}`` or
``{"error": {"type", "message"}}``. Headers carry what the AMQP properties and headers carry:
``traceparent``/``tracestate``/``baggage``, ``x-sent-at-ns`` and ``x-timeout-ms`` on the
request, ``x-handler-ns`` and ``x-sent-at-ns`` on the response. The worker side runs the
worker's one dispatch (:meth:`broker.rpc.router.Router.dispatch`), so a method behaves the same
whichever way it is reached.

The status mirrors the envelope (200 result, 400 bad request, 404 not found or unknown method,
500 handler failure, 504 deadline passed) for proxies and meshes that count by status; the
caller decodes the envelope first and falls back on the status only when there is none.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec
from opentelemetry import propagate, trace

from broker.errors import RpcRemoteError, RpcTimeout, RpcUnavailable, RpcUnroutable
from broker.rpc.calls import Call, call_chain
from broker.rpc.client import remote_error
from broker.rpc.wire import (
    CONTENT_TYPE,
    HANDLER_NS,
    SENT_AT_NS,
    TIMEOUT_MS,
    ErrorBody,
    encode,
    text_header_int,
)
from broker.telemetry.tracing import TRACER, CallTiming

T = TypeVar("T")

PATH = "/rpc/"  # POST /rpc/{method}


class _ErrorReply(msgspec.Struct, frozen=True):
    error: ErrorBody


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
        self._session: aiohttp.ClientSession | None = None
        # Tracing, metrics and timing around each call (broker.rpc.calls), composed once here.
        self._call = call_chain(self._tracer, tracer_provider, self._round_trip)

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
        result: T = await self._call(Call(method, request, result_type, timeout, attributes))
        return result

    async def _round_trip(self, call: Call) -> tuple[bytes, CallTiming]:
        method, request, timeout = call.method, call.request, call.timeout
        url: str | None = call.attributes.get("url.full")
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
            handler_ns=text_header_int(response.headers, HANDLER_NS) or 0,
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
