"""The telemetry of RPC over AMQP that only this transport has: the caller's PRODUCER span and
``reply wait`` span, and around one delivery a worker handles: its spans (``queue wait``, the
CONSUMER span ``process <queue> <method>``), the queue wait and transit metrics, and the
:class:`Handling` bookkeeping (handler metrics, the span's status, the request log line).

:class:`DeliveryTelemetry` is the worker's one telemetry middleware around the handling of a
request; the HTTP endpoint has its own (a SERVER span, :mod:`broker.rpc.http_server`) around the
same :class:`Handling`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiormq.abc import DeliveredMessage
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from broker.rpc.delivery import TEXT_HEADERS
from broker.rpc.transit import BrokerRoundTrip, observe, split, transit_attributes
from broker.rpc.wire import SENT_AT_NS, header_int
from broker.telemetry.handling import Handling
from broker.telemetry.metrics import RPC_QUEUE_WAIT, exemplar, labelled
from broker.telemetry.tracing import messaging_attributes, records_nothing, wait_attributes

# What the worker does with a delivery inside its telemetry: dispatch, reply, settle; the
# outcome. (message, method, sent_at, received_ns, queue_wait_ns, settled)
Complete = Callable[[DeliveredMessage, str, int | None, int, int, list[bool]], Awaitable[str]]


class DeliveryTelemetry:
    """The telemetry middleware around one worker's handling of its AMQP deliveries: made once
    per worker around its ``complete``, then called once per delivery."""

    def __init__(  # noqa: PLR0917 - made once, by the worker
        self,
        tracer: trace.Tracer,
        provider: trace.TracerProvider | None,
        topology_exchange: str,
        queue: str,
        broker_rtt: BrokerRoundTrip,
        complete: Complete,
    ) -> None:
        self._tracer = tracer
        self._provider = provider
        self._exchange = topology_exchange
        self._queue = queue
        self._broker_rtt = broker_rtt
        self._complete = complete

    async def __call__(self, message: DeliveredMessage, settled: list[bool]) -> None:
        """Handle ``message`` (``complete``) under its spans, metrics and request log line."""
        received_ns = time.time_ns()
        properties = message.header.properties
        headers = properties.headers or {}
        sent_at = header_int(headers, SENT_AT_NS)
        queue_wait_ns = max(0, received_ns - sent_at) if sent_at is not None else 0
        tracer, broker_rtt, queue = self._tracer, self._broker_rtt, self._queue
        method = message.routing_key or ""
        # The caller's PRODUCER span is the parent of the wait and of the processing.
        parent = propagate.extract(headers, getter=TEXT_HEADERS)
        caller = trace.get_current_span(parent)
        if records_nothing(self._provider, caller.get_span_context()):
            # Not sampled, or no SDK: no span would be recorded, so none is made. The caller's
            # context is still the current one: its trace id for the log lines, and its
            # sampling decision for the handler's own spans (not new root traces).
            token = otel_context.attach(parent)
            try:
                with _measured(
                    method, caller, headers, sent_at, queue_wait_ns, broker_rtt
                ) as handling:
                    handling.outcome = await self._complete(
                        message, method, sent_at, received_ns, queue_wait_ns, settled
                    )
            finally:
                otel_context.detach(token)
            return
        attributes = messaging_attributes(
            "process", self._exchange, method, properties.correlation_id, message.body
        )
        attributes["messaging.destination.subscription.name"] = queue
        if sent_at is not None and caller.get_span_context().is_valid:
            # Only under the caller's span: without one it would be a trace of its own.
            # Wall clocks of two hosts: clamped so that skew cannot make it negative.
            wait = tracer.start_span(
                f"queue wait {method}",
                context=parent,
                start_time=min(sent_at, received_ns),
                attributes=wait_attributes(
                    method, properties.correlation_id, "rpc.queue_wait_ms", queue_wait_ns
                )
                | transit_attributes(*split(headers, sent_at, queue_wait_ns, broker_rtt.half_ns())),
            )
            wait.end(end_time=received_ns)
        with (
            tracer.start_as_current_span(
                f"process {queue} {method}",
                context=parent,
                kind=SpanKind.CONSUMER,
                start_time=received_ns,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            _measured(method, span, headers, sent_at, queue_wait_ns, broker_rtt) as handling,
        ):
            handling.outcome = await self._complete(
                message, method, sent_at, received_ns, queue_wait_ns, settled
            )


def _measured(  # noqa: PLR0917 - one private call site
    method: str,
    span: trace.Span,
    headers: Mapping[str, Any],
    sent_at: int | None,
    wait_ns: int,
    broker_rtt: BrokerRoundTrip,
) -> Handling:
    """The delivery's queue wait and transit observed; its :class:`Handling`, to enter."""
    if sent_at is not None:
        labelled(RPC_QUEUE_WAIT, method).observe(wait_ns / 1e9, exemplar(span))
        observe(method, *split(headers, sent_at, wait_ns, broker_rtt.half_ns()), exemplar(span))
    return Handling(method, span, "amqp", wait_ns)


def producer_span(
    tracer: trace.Tracer,
    exchange: str,
    method: str,
    correlation_id: str,
    *,
    body: bytes,
    headers: dict[str, Any],
) -> trace.Span | None:
    """The PRODUCER span ``send <exchange>:<method>`` of a request, if any; the trace context
    injected into ``headers`` either way (the span's, or the current one)."""
    # The PRODUCER span only in a sampled trace: unsampled, it would carry nothing, and the
    # call span's context (still valid, with its trace id) is what the worker continues.
    if not trace.get_current_span().get_span_context().trace_flags.sampled:
        propagate.inject(headers)
        return None
    producer = tracer.start_span(
        f"send {exchange}:{method}",
        kind=SpanKind.PRODUCER,
        attributes=messaging_attributes("send", exchange, method, correlation_id, body),
        record_exception=False,
        set_status_on_exception=False,
    )
    propagate.inject(headers, context=trace.set_span_in_context(producer))
    return producer


def reply_wait_span(
    tracer: trace.Tracer,
    producer: trace.Span,
    method: str,
    correlation_id: str,
    *,
    start_ns: int,
    end_ns: int,
) -> None:
    """The ``reply wait`` span of a reply, under the request's PRODUCER span."""
    tracer.start_span(
        f"reply wait {method}",
        context=trace.set_span_in_context(producer),
        start_time=start_ns,
        attributes=wait_attributes(method, correlation_id, "rpc.reply_wait_ms", end_ns - start_ns),
    ).end(end_time=end_ns)
