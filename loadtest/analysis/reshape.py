"""Traces made the shape the critical path reads, whichever instrumentation recorded them.

Two rewrites before the walk: a span with no parent in the trace but a link to a span in it
takes the linked span as its FOLLOWS_FROM parent (`follow_links`), and request-reply as other
instrumentations trace it (stock aio-pika: no CLIENT span, no waits) gets the spans our own
instrumentation records (`other_request_replies`). The spans added have ids made by
`synthetic_id` and carry ``analysis.synthetic``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from loadtest.otlp import Span


def synthetic_id(span_id: str, role: str) -> str:
    """The id of a span the analyser adds (``role`` of the span ``span_id``): 16 hex digits."""
    return hashlib.blake2b(f"{span_id}/{role}".encode(), digest_size=8).hexdigest()


def follow_links(spans: list[Span], ids: set[str]) -> list[Span]:
    """A span with no parent in the trace but a link to a span in it (a consumer linked to its
    producer, not parented) takes the linked span as a FOLLOWS_FROM parent."""
    followed = []
    for span in spans:
        link = next((link for link in span.links if link in ids), None)
        if span.parent_id not in ids and link is not None and link != span.span_id:
            followed.append(replace(span, parent_id=link, follows_from=True))
        else:
            followed.append(span)
    return followed


def _is_queue_wait(span: Span) -> bool:
    return span.kind != "CLIENT" and (
        "rpc.queue_wait_ms" in span.attributes or span.name.startswith("queue wait ")
    )


def _children(spans: list[Span]) -> dict[str, list[Span]]:
    """Each span's children in start order (then by id), so that which consumer or reply is
    taken never depends on the order a format lists spans in (OTLP groups them by service)."""
    children: dict[str, list[Span]] = {}
    for span in sorted(spans, key=lambda s: (s.start_us, s.span_id)):
        children.setdefault(span.parent_id, []).append(span)
    return children


def _reply_consumer(
    producer: Span, consumer: Span, children: dict[str, list[Span]]
) -> tuple[Span, Span] | None:
    """The reply of a request-reply: a PRODUCER under ``consumer`` (the worker's reply) whose
    CONSUMER child runs back in the caller's service (stock aio-pika: ``<reply-to> receive``)."""
    stack = list(children.get(consumer.span_id, []))
    while stack:
        span = stack.pop()
        if span.kind == "PRODUCER":
            for receive in children.get(span.span_id, []):
                if receive.kind == "CONSUMER" and receive.service == producer.service:
                    return span, receive
        stack.extend(children.get(span.span_id, []))
    return None


def _destination(send: Span) -> str:
    """What a send's name says it sends to: ``rpc send`` (stock), ``send rpc:m`` (ours)."""
    return send.name.removesuffix(" send").removeprefix("send ")


def _synthetic(
    of: Span, role: str, parent: str, name: str, interval: tuple[int, int], **attributes: Any
) -> Span:
    return Span(
        trace_id=of.trace_id,
        span_id=synthetic_id(of.span_id, role),
        parent_id=parent,
        service=of.service,
        name=name,
        kind="INTERNAL" if role != "call" else "CLIENT",
        start_ns=interval[0] * 1000,
        end_ns=interval[1] * 1000,
        attributes={"analysis.synthetic": True, **attributes},
    )


def other_request_replies(spans: list[Span]) -> list[Span]:
    """Request-reply as other instrumentations trace it, made the shape rule 3 reads.

    Stock opentelemetry-instrumentation-aio-pika traces a call as a PRODUCER (``<exchange or
    routing key> send``) under the caller's own span, with no CLIENT span for the call, the
    worker's CONSUMER (``<queue> receive``) under it, the worker's reply PRODUCER (``<reply-to
    queue> send``) under that, and the caller's reply CONSUMER (``<reply-to queue> receive``)
    under the reply. Nothing marks the waits. Here: a CONSUMER of another service under a
    PRODUCER whose parent is not a CLIENT is a call when a reply comes back to the caller (or
    when the worker is ours: its ``queue wait`` span says it handles requests). The analyser
    adds what the caller's instrumentation did not record: the call (CLIENT, from the send to
    the reply's receipt), the queue wait (from the send to the delivery) when the worker did not
    record one, and the reply wait (from the reply's send to its receipt). Under our own CLIENT
    span only the missing queue wait is added.
    """
    by_id = {span.span_id: span for span in spans}
    children = _children(spans)
    added: list[Span] = []
    moved: dict[str, Span] = {}
    for producer in spans:
        if producer.kind != "PRODUCER":
            continue
        below = children.get(producer.span_id, [])
        consumer = next(
            (s for s in below if s.kind == "CONSUMER" and s.service != producer.service), None
        )
        if consumer is None:
            continue
        has_wait = any(_is_queue_wait(s) for s in below)
        parent = by_id.get(producer.parent_id)
        under_call = parent is not None and parent.kind == "CLIENT"
        reply = _reply_consumer(producer, consumer, children)
        if not under_call and ((reply is None and not has_wait) or parent is None):
            continue  # a message nobody answers is not a call, nor one nobody in the trace sent
        if not has_wait:
            added.append(
                _synthetic(
                    producer,
                    "queue wait",
                    producer.span_id,
                    f"queue wait {_destination(producer)}",
                    (producer.start_us, max(producer.start_us, consumer.start_us)),
                    **{"rpc.queue_wait_ms": (consumer.start_us - producer.start_us) / 1000},
                )
            )
        if under_call:
            continue
        # The call ends when the caller has its reply; the worker's span after it sent the
        # reply (its ack) is not waited for. Never before the send (a skewed delivery).
        end = max(producer.start_us, reply[1].end_us if reply else consumer.end_us)
        if reply is not None:
            end_us = max(consumer.start_us, min(consumer.end_us, reply[0].end_us))
            moved[consumer.span_id] = replace(consumer, end_ns=end_us * 1000)
        call = _synthetic(
            producer,
            "call",
            producer.parent_id,
            f"call {_destination(producer)}",
            (producer.start_us, end),
            **{"rpc.system": "rabbitmq"},
        )
        added.append(call)
        moved[producer.span_id] = replace(producer, parent_id=call.span_id)
        if reply is not None:
            sent, received = reply
            moved[received.span_id] = replace(received, parent_id=call.span_id)
            added.append(
                _synthetic(
                    received,
                    "reply wait",
                    call.span_id,
                    f"reply wait {_destination(producer)}",
                    (min(sent.start_us, received.start_us), received.start_us),
                    **{"rpc.reply_wait_ms": (received.start_us - sent.start_us) / 1000},
                )
            )
    return [moved.get(span.span_id, span) for span in spans] + added
