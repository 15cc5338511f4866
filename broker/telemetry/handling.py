"""The bookkeeping of one request a worker handles, whatever the transport: its metrics, its
span's status and its request log line."""

from __future__ import annotations

import asyncio
import logging
import time

from opentelemetry import trace

from broker.telemetry.metrics import RPC_HANDLER_DURATION, RPC_HANDLER_IN_FLIGHT, exemplar, labelled
from broker.telemetry.tracing import request_logged, span_error

log = logging.getLogger("broker._worker")  # the worker's lines, under the worker's name


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
