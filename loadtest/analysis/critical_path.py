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

from dataclasses import dataclass
from typing import Any

from loadtest.analysis.categories import CATEGORIES, Node, category
from loadtest.analysis.reshape import follow_links, other_request_replies
from loadtest.analysis.traces import Span, Trace


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
    picked = _pick_root(follow_links(list(trace.spans), set(by_id)), set(by_id))
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


def _clamp(node: Node, start: int, end: int) -> int:
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


def _size(node: Node) -> int:
    return 1 + sum(_size(child) for child in node.children)


def _walk(node: Node, until: int, pieces: list[tuple[Node, int, int]]) -> None:
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
    spans = other_request_replies(follow_links(spans, ids))
    by_id = {span.span_id: span for span in spans}
    picked = _pick_root(spans, set(by_id))
    if picked is None:
        return None
    root_span, adopted = picked
    nodes = {span.span_id: Node(span) for span in spans}
    root = nodes[root_span.span_id]
    root.children.extend(nodes[span.span_id] for span in adopted)
    detached: list[Node] = []
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
    pieces: list[tuple[Node, int, int]] = []
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
    root: Node,
    pieces: list[tuple[Node, int, int]],
    *,
    orphans: int,
    dropped: int,
    not_blocking: int,
) -> TraceResult:
    categories = dict.fromkeys(CATEGORIES, 0)
    self_us: dict[str, int] = {}
    first: dict[str, int] = {}
    owners: dict[str, Node] = {}
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
    (the player's, `loadtest.analysis.trace_api`) colours every span, with the same rules.
    """
    by_id = {span.span_id: span for span in trace.spans}
    nodes = {span.span_id: Node(span) for span in trace.spans}
    for span in trace.spans:
        if span.parent_id in by_id and span.parent_id != span.span_id:
            nodes[_effective_parent(span, by_id)].children.append(nodes[span.span_id])
    return {span_id: category(node) for span_id, node in nodes.items()}
