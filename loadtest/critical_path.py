"""One trace: its critical path, queue-aware, and its duration split into categories.

The rules (docs/analysis.md has them with a worked example):

- The trace is the tree under its root: the span without a parent reference (the longest,
  then earliest, if several), else the longest span whose parent is not in the trace. The
  other spans whose parent is not in the trace (orphans), and further roots, are adopted by
  the root. A span that FOLLOWS_FROM its parent is not waited for: it and its subtree are
  off the path, and the parent's time meanwhile is the parent's own.
- Request-reply over a queue: the children of a PRODUCER span whose parent is a CLIENT span
  (the worker's ``queue wait`` and ``process``, the caller's ``reply wait``) are lifted to be
  children of that CLIENT span. They run after the send ended but inside the call the caller
  waits for, so they stay on the path; Jaeger would clamp them away as non-blocking.
- Every child is clamped to its parent's interval (clock skew); a child entirely outside it is
  dropped with its subtree.
- From the end of a span backwards: the child that ran latest before the current point is on
  the path (cut at the point if it was still running), then the point moves to its start. The
  gaps between are the span's own time. This is Jaeger's walk, except that Jaeger skips a
  child still running at the point, which would hand a worker's whole handler time to the
  broker: the handler publishes the reply, and so ends after the reply wait starts.
- Each piece of the path is a span's own time, and the span gives its category.

All times are integer microseconds, so the pieces tile the root's interval exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from loadtest.traces import Span, Trace

CATEGORIES = (
    "app",
    "db",
    "s3",
    "queue_wait",
    "transit",
    "reply_wait",
    "broker",
    "mesh",
    "network",
    "residual",
)


# The two sides of "is it the queue or the network?": time a request sat in a queue, against
# time on the wire (to and from the broker, and between hosts), each direction.
QUEUE_SIDE = ("queue_wait",)
WIRE_SIDE = ("transit", "broker", "reply_wait", "network")


@dataclass(frozen=True)
class Step:
    """A span on the critical path and the time it alone held the path."""

    span: Span
    self_us: int
    category: str

    @property
    def where(self) -> str:
        return f"{self.span.service}:{self.span.name}"


@dataclass(frozen=True)
class TraceResult:
    trace_id: str
    root: Span
    duration_us: int
    categories: dict[str, int]
    critical_path: list[Step]
    orphans: int  # spans adopted by the root: parent missing, or a second root
    dropped: int  # spans clamped away: entirely outside their parent (with their subtrees)
    not_blocking: int  # FOLLOWS_FROM spans and their subtrees

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "root": f"{self.root.service}:{self.root.name}",
            "duration_ms": self.duration_us / 1000,
            "categories": {name: us / 1000 for name, us in self.categories.items()},
            "critical_path": [
                {
                    "span_id": step.span.span_id,
                    "service": step.span.service,
                    "operation": step.span.name,
                    "kind": step.span.kind,
                    "category": step.category,
                    "self_ms": step.self_us / 1000,
                }
                for step in self.critical_path
            ],
            "orphans": self.orphans,
            "dropped": self.dropped,
            "not_blocking": self.not_blocking,
        }


@dataclass
class _Node:
    span: Span
    start: int = 0
    end: int = 0
    children: list[_Node] = field(default_factory=list)


def _is_mesh(span: Span) -> bool:
    attributes = span.attributes
    node_id = str(attributes.get("node_id", ""))
    return (
        attributes.get("component") == "proxy"
        or "upstream_cluster" in attributes
        or node_id.startswith(("sidecar~", "router~"))
    )


def _is_s3(span: Span) -> bool:
    attributes = span.attributes
    return (
        (attributes.get("rpc.system") == "aws-api" and attributes.get("rpc.service") == "S3")
        or any(key.startswith("aws.s3.") for key in attributes)
        or span.name.startswith("S3 ")
    )


def _is_rpc_call(node: _Node) -> bool:
    """A CLIENT span whose transport is a broker: it sent a message, or says so."""
    attributes = node.span.attributes
    return (
        any(child.span.kind == "PRODUCER" for child in node.children)
        or "messaging.system" in attributes
        or attributes.get("rpc.system") == "rabbitmq"
    )


def _mesh_category(node: _Node) -> str:
    """A proxy span's own time: only what is demonstrably the proxy's is ``mesh``.

    An outbound proxy (a sidecar's CLIENT span, or a gateway's) holds the hop to the callee:
    its time around its remote child is ``network`` (``residual`` with no child: nothing
    explains it). An inbound proxy's span holds the application behind it: when the
    application left spans of its own under it, the time around them is the proxy's
    (``mesh``); when it left none, the time is the application's (``app``).
    """
    span = node.span
    if span.kind == "CLIENT" or str(span.attributes.get("node_id", "")).startswith("router~"):
        return "network" if node.children else "residual"
    if any(not _is_mesh(child.span) for child in node.children):
        return "mesh"
    return "app"


def category(node: _Node) -> str:  # noqa: PLR0911 - one rule a line reads best
    """The category of a span's own time (first matching rule wins)."""
    span, attributes = node.span, node.span.attributes
    if _is_mesh(span):
        return _mesh_category(node)
    if "db.system" in attributes or "db.system.name" in attributes:
        return "db"
    if _is_s3(span):
        return "s3"
    if span.kind != "CLIENT":
        if "rpc.queue_wait_ms" in attributes or span.name.startswith("queue wait "):
            return "queue_wait"
        if "rpc.reply_wait_ms" in attributes or span.name.startswith("reply wait "):
            return "reply_wait"
    if span.kind == "PRODUCER":
        return "broker"
    if span.kind == "CLIENT":
        if _is_rpc_call(node):
            return "broker"
        # The child is the remote side: while it does not hold the path, the request or the
        # response is on the wire. With no child, the callee left no span: nothing explains it.
        return "network" if node.children else "residual"
    return "app"


def _pick_root(spans: list[Span], ids: set[str]) -> tuple[Span, list[Span]] | None:
    """The root, and the other top-level spans (orphans, further roots) it adopts."""
    tops = [span for span in spans if span.parent_id not in ids]
    if not tops:  # every span has its parent in the trace: a cycle, nothing to start from
        return None
    real = [span for span in tops if not span.parent_id] or tops
    root = min(real, key=lambda s: (s.start_us - s.end_us, s.start_us, s.span_id))
    return root, [span for span in tops if span is not root]


def root_span(trace: Trace) -> Span | None:
    """The root `analyse_trace` reports, without the analysis; None where it returns None."""
    by_id = {span.span_id: span for span in trace.spans}
    picked = _pick_root(_follow_links(list(trace.spans), set(by_id)), set(by_id))
    # The span analysed is the last of its id, as `analyse_trace`'s nodes keep it.
    return None if picked is None else by_id[picked[0].span_id]


def _effective_parent(span: Span, by_id: dict[str, Span]) -> str:
    """The parent for the walk: a request-reply PRODUCER's children belong to its CLIENT."""
    parent = by_id[span.parent_id]
    grandparent = by_id.get(parent.parent_id)
    if (
        parent.kind == "PRODUCER"
        and grandparent is not None
        and grandparent.kind == "CLIENT"
        and not parent.follows_from
    ):
        return grandparent.span_id
    return parent.span_id


def _clamp(node: _Node, start: int, end: int) -> int:
    """Clamp the subtree to [start, end]; drop children outside. Returns how many dropped."""
    node.start, node.end = max(node.span.start_us, start), min(node.span.end_us, end)
    dropped = 0
    kept = []
    for child in node.children:
        start, end = child.span.start_us, child.span.end_us
        overlaps = start < node.end and end > node.start
        instant = start == end and node.start <= start <= node.end
        if overlaps or instant:
            dropped += _clamp(child, node.start, node.end)
            kept.append(child)
        else:
            dropped += _size(child)
    node.children = kept
    return dropped


def _size(node: _Node) -> int:
    return 1 + sum(_size(child) for child in node.children)


def _walk(node: _Node, until: int, pieces: list[tuple[_Node, int, int]]) -> None:
    """Append the path through ``node`` from ``until`` back to its start, latest piece first."""
    point = until
    pending = list(node.children)
    while True:
        running = [child for child in pending if child.start < point]
        if not running:
            break
        # Of children still running at the point, the first started explains the most: the
        # queue wait (from the publish) rather than the send (until the broker's confirm,
        # which can come after the delivery).
        child = max(running, key=lambda c: (min(c.end, point), -c.start, c.span.span_id))
        reached = min(child.end, point)
        pieces.append((node, reached, point))
        _walk(child, reached, pieces)
        point = child.start
        pending.remove(child)
    pieces.append((node, node.start, point))


def synthetic_id(span_id: str, role: str) -> str:
    """The id of a span the analyser adds (``role`` of the span ``span_id``): 16 hex digits."""
    return hashlib.blake2b(f"{span_id}/{role}".encode(), digest_size=8).hexdigest()


def _follow_links(spans: list[Span], ids: set[str]) -> list[Span]:
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
    children: dict[str, list[Span]] = {}
    for span in spans:
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
        start_us=interval[0],
        end_us=interval[1],
        attributes={"analysis.synthetic": True, **attributes},
    )


def _other_request_replies(spans: list[Span]) -> list[Span]:
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
        # reply (its ack) is not waited for.
        end = reply[1].end_us if reply else consumer.end_us
        if reply is not None:
            moved[consumer.span_id] = replace(
                consumer, end_us=max(consumer.start_us, min(consumer.end_us, reply[0].end_us))
            )
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


def _transit_us(span: Span) -> int:
    """A queue wait span's time on the wire (``rpc.queue_transit_ms``; 0 when not recorded)."""
    raw = span.attributes.get("rpc.queue_transit_ms", 0)
    try:
        return max(0, round(float(raw) * 1000))
    except (TypeError, ValueError):
        return 0


def analyse_trace(trace: Trace) -> TraceResult | None:
    """The critical path and categories of one trace; None if it has no span to root it."""
    spans = list(trace.spans)
    ids = {span.span_id for span in spans}
    spans = _other_request_replies(_follow_links(spans, ids))
    by_id = {span.span_id: span for span in spans}
    picked = _pick_root(spans, set(by_id))
    if picked is None:
        return None
    root_span, adopted = picked
    nodes = {span.span_id: _Node(span) for span in spans}
    root = nodes[root_span.span_id]
    root.children.extend(nodes[span.span_id] for span in adopted)
    detached: list[_Node] = []
    for span in spans:
        if span.parent_id not in by_id or span is root_span:
            continue
        node = nodes[span.span_id]
        parent_id = _effective_parent(span, by_id)
        if span.follows_from and parent_id == span.parent_id:
            detached.append(node)  # not waited for (a request-reply leg is: it was lifted)
        else:
            nodes[parent_id].children.append(node)
    not_blocking = sum(_size(node) for node in detached)
    dropped = _clamp(root, root_span.start_us, root_span.end_us)
    pieces: list[tuple[_Node, int, int]] = []
    _walk(root, root.end, pieces)
    return _result(
        trace.trace_id,
        root,
        pieces,
        orphans=len(adopted),
        dropped=dropped,
        not_blocking=not_blocking,
    )


def _result(
    trace_id: str,
    root: _Node,
    pieces: list[tuple[_Node, int, int]],
    *,
    orphans: int,
    dropped: int,
    not_blocking: int,
) -> TraceResult:
    categories = dict.fromkeys(CATEGORIES, 0)
    self_us: dict[str, int] = {}
    first: dict[str, int] = {}
    owners: dict[str, _Node] = {}
    transit: dict[str, int] = {}  # what is left to name transit, per queue wait span
    for node, start, end in pieces:
        span_id = node.span.span_id
        owners[span_id] = node
        self_us[span_id] = self_us.get(span_id, 0) + end - start
        first[span_id] = min(first.get(span_id, start), start)
        name = category(node)
        if name == "queue_wait":
            # The wire's share of a queue wait (its transit, to the broker and from it) is
            # the wire's; what is left is the time in the queue (docs/analysis.md).
            left = transit.setdefault(span_id, _transit_us(node.span))
            wire = min(left, end - start)
            transit[span_id] = left - wire
            categories["transit"] += wire
            categories[name] += end - start - wire
        else:
            categories[name] += end - start
    steps = [
        Step(owners[span_id].span, self_us[span_id], category(owners[span_id]))
        for span_id in sorted(owners, key=lambda s: (first[s], owners[s].start, s))
    ]
    return TraceResult(
        trace_id=trace_id,
        root=root.span,
        duration_us=root.end - root.start,
        categories=categories,
        critical_path=steps,
        orphans=orphans,
        dropped=dropped,
        not_blocking=not_blocking,
    )


def span_categories(trace: Trace) -> dict[str, str]:
    """The category of every span's own time, by `category`'s rules, keyed by span id.

    `analyse_trace` names the categories of the spans on the critical path only; a waterfall
    (the player's, `loadtest.trace_api`) colours every span, with the same rules.
    """
    by_id = {span.span_id: span for span in trace.spans}
    nodes = {span.span_id: _Node(span) for span in trace.spans}
    for span in trace.spans:
        if span.parent_id in by_id and span.parent_id != span.span_id:
            nodes[_effective_parent(span, by_id)].children.append(nodes[span.span_id])
    return {span_id: category(node) for span_id, node in nodes.items()}
