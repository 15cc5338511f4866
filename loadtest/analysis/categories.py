"""The category of a span's own time on the critical path: app, db, s3, the queue, the wire.

The rules, first match wins (docs/analysis.md has them with examples): a mesh proxy's span is
the proxy's only where it demonstrably is; a database or S3 span is ``db`` or ``s3``; a queue
wait and a reply wait are named by their attribute or span name; a PRODUCER, or a CLIENT whose
transport is a broker, is ``broker``; another CLIENT's own time is the wire (``network``), or
unexplained (``residual``) when the callee left no span; everything else is ``app``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.otlp import Span

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


@dataclass
class Node:
    """A span in the walked tree, its interval clamped to its parent's."""

    span: Span
    start: int = 0
    end: int = 0
    children: list[Node] = field(default_factory=list)


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


def _is_rpc_call(node: Node) -> bool:
    """A CLIENT span whose transport is a broker: it sent a message, or says so."""
    attributes = node.span.attributes
    return (
        any(child.span.kind == "PRODUCER" for child in node.children)
        or "messaging.system" in attributes
        or attributes.get("rpc.system") == "rabbitmq"
    )


def _mesh_category(node: Node) -> str:
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


def category(node: Node) -> str:  # noqa: PLR0911 - one rule a line reads best
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
