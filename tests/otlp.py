"""An OTLP/HTTP trace receiver for tests: what the services export, decoded and kept.

Decoding is the tools' one OTLP codec (``loadtest.otlp``); this adds waiting and a picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from loadtest.otlp import Span, request_spans

__all__ = ["OtlpReceiver", "Span", "waterfall"]


class OtlpReceiver:
    """``POST /v1/traces`` in OTLP/protobuf or OTLP/JSON (read strictly: an unknown field fails);
    ``wait_for`` waits for a condition on the spans received."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self._export)

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has undone any gzip or deflate Content-Encoding
        is_json = request.content_type == "application/json"
        received = request_spans(body, is_json)
        async with self._changed:
            self.spans.extend(received)
            self._changed.notify_all()
        if is_json:
            return web.json_response({})
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 15) -> None:
        """Wait until ``predicate(spans)``; on timeout, fail with what did arrive."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: predicate(self.spans))
        except TimeoutError:
            seen = "\n".join(
                f"  {s.service} {s.kind} {s.name!r} trace={s.trace_id[:8]} error={s.error}"
                for s in self.spans
            )
            raise AssertionError(f"spans never arrived; received:\n{seen}") from None

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.spans if s.trace_id == trace_id]


def waterfall(trace: list[Span], width: int = 48) -> str:
    """The trace as text: one line per span, indented under its parent, with a time bar."""
    by_parent: dict[str, list[Span]] = {}
    for span in trace:
        by_parent.setdefault(span.parent_id, []).append(span)
    ids = {s.span_id for s in trace}
    roots = [s for s in trace if s.parent_id not in ids]
    start = min(s.start_ns for s in trace)
    total = max(s.end_ns for s in trace) - start or 1
    lines = []

    def walk(span: Span, depth: int) -> None:
        left = round((span.start_ns - start) / total * width)
        length = max(1, round((span.end_ns - span.start_ns) / total * width))
        bar = " " * left + "█" * min(length, width - left)
        label = f"{'  ' * depth}{span.kind:<8} {span.name}"
        if len(label) > 52:
            label = label[:51] + "…"
        lines.append(f"{span.service:<15} {label:<52} {span.duration_ms:7.2f} ms |{bar:<{width}}|")
        for child in sorted(by_parent.get(span.span_id, []), key=lambda s: s.start_ns):
            walk(child, depth + 1)

    for root in sorted(roots, key=lambda s: s.start_ns):
        walk(root, 0)
    return "\n".join(lines)
