"""An OTLP/HTTP trace receiver for tests: what the services export, decoded and kept."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(hash=False)
    error: bool

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: list[KeyValue]) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def request_from_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body as the message it stands for, strictly (unknown fields fail).

    OTLP/JSON is protobuf's JSON mapping except for the ids, hex instead of base64: they are
    turned back into base64 before protobuf's own parser reads the rest.
    """
    document = json.loads(body)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for field_name in ("traceId", "spanId", "parentSpanId"):
                        if field_name in item:
                            item[field_name] = _b64(item[field_name])
    return json_format.ParseDict(document, ExportTraceServiceRequest())


class OtlpReceiver:
    """``POST /v1/traces`` in OTLP/protobuf or OTLP/JSON; ``wait_for`` waits for a condition."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._changed = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self._export)

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has undone any gzip or deflate Content-Encoding
        is_json = request.content_type == "application/json"
        export = request_from_json(body) if is_json else ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in export.resource_spans:
            service = _attributes(list(resource_spans.resource.attributes))["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=service,
                            name=span.name,
                            kind=PbSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(list(span.attributes)),
                            error=span.status.code == Status.STATUS_CODE_ERROR,
                        )
                    )
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
