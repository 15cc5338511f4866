"""The bookkeeping of one request a worker handles, whatever the transport, and the answer
to a request whose dependency (the database) is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import yarl
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter

from ._dependency import RepeatedLog
from ._metrics import RPC_HANDLER_DURATION, RPC_HANDLER_IN_FLIGHT, exemplar, labelled
from ._telemetry import request_logged, span_error
from ._wire import encode_error

# Deliveries of one request past which it is dead-lettered (broker._deadletter): a request
# that kills its worker three times would kill the next one too.
DELIVERY_LIMIT = 3

# Seconds between AMQP heartbeats of a worker's connection. A frozen worker (SIGSTOP, a
# blocked loop) stops sending them; after two missed beats (~2x this) the broker closes its
# connection and requeues the requests it had prefetched, to a live worker (docs/rpc.md,
# "A frozen worker"). RabbitMQ's default, 60 s, would hold them two minutes.
HEARTBEAT_S = 10

log = logging.getLogger("broker._worker")  # the worker's lines, under the worker's name
_outages = RepeatedLog(log)


def heartbeat_url(url: str) -> str:
    """``url`` with the worker's heartbeat, unless the URL sets one itself."""
    parsed = yarl.URL(url)
    if "heartbeat" in parsed.query:
        return url
    return str(parsed.update_query(heartbeat=HEARTBEAT_S))


class _TextHeaders(Getter[Mapping[str, Any]]):
    """Reads trace context from AMQP headers, ignoring values that are not strings: a
    ``traceparent`` sent as an integer (or a table, or bytes) is no trace context, and must not
    crash the request it came with (it gets its reply, under a new trace)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key, value in carrier.items() if isinstance(value, str)]


TEXT_HEADERS = _TextHeaders()


def unavailable_reply(method: str, exc: BaseException) -> tuple[bytes, str]:
    """The error reply ``unavailable`` (acked, not dead-lettered: the request was valid), and
    one log line per outage and method every few seconds, not a traceback per request."""
    _outages.warning(
        f"{method}:{type(exc).__name__}", f"rpc dependency unavailable method={method}", exc
    )
    return encode_error("unavailable", "a dependency of the worker is unavailable"), "unavailable"


class Handling:
    """The bookkeeping of one request on any transport: the in-flight gauge, the handler
    duration by outcome, the span's status and the request's log line.

    Set ``outcome`` inside the block; it stays ``error`` if the block raises (the reply or
    the ack failed), and becomes ``cancelled`` if the block is cancelled.
    """

    def __init__(self, method: str, span: trace.Span, transport: str, queue_wait_ns: int) -> None:
        self.method = method
        self.outcome = "error"
        self._span = span
        self._transport = transport
        self._queue_wait_ns = queue_wait_ns
        self._in_flight = labelled(RPC_HANDLER_IN_FLIGHT, method)
        self._started = 0

    def __enter__(self) -> Handling:
        self._in_flight.inc()
        self._started = time.monotonic_ns()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.outcome = "cancelled"
        self._in_flight.dec()
        handler_ns = time.monotonic_ns() - self._started
        labelled(RPC_HANDLER_DURATION, self.method, self.outcome).observe(
            handler_ns / 1e9, exemplar(self._span)
        )
        if self.outcome != "ok":
            span_error(self._span, self.outcome, f"{self.method}: {self.outcome}")
        if not request_logged(self.outcome == "ok", self._span):
            return
        log.info(
            "rpc method=%s outcome=%s handler_ms=%.3f queue_wait_ms=%.3f transport=%s",
            self.method,
            self.outcome,
            handler_ns / 1e6,
            self._queue_wait_ns / 1e6,
            self._transport,
        )
