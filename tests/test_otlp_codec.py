"""The tools' one OTLP codec (`loadtest.otlp`) against what feeds it: the services' exporters.

Spans of a real SDK are encoded by the services' OTLP/JSON encoder and by the official protobuf
encoder, decoded by the codec, and must come back as they were made: ids, parents, service,
name, kind, times to the nanosecond, attributes, links and error status. The sink's file line
(protobuf turned into OTLP-JSON) must read back the same through the analyser's loader.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from broker._otlp_encode import encode_spans as services_json  # the services' OTLP/JSON encoder
from loadtest.analysis.traces import text_spans
from loadtest.otlp import Span, otlp_json, request_spans

REMOTE = SpanContext(
    trace_id=0x0AF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)
ATTRIBUTES: dict[str, Any] = {
    "http.route": "/dramas/{id}",
    "escaped": 'quote " backslash \\ ünï 字',
    "http.response.status_code": 404,
    "int64 max": 2**63 - 1,
    "ratio": 0.25,
    "synthetic": True,
    "tags": ["a", "b"],
    "numbers": [1, -2],
}


def made_spans() -> list[ReadableSpan]:
    """A request over two services: a SERVER with a remote parent, a CLIENT linked to another
    trace, a PRODUCER and the worker's CONSUMER, one span failed."""
    memory = InMemorySpanExporter()
    gateway = TracerProvider(resource=Resource({"service.name": "drama-service"}))
    worker = TracerProvider(resource=Resource({"service.name": "episode-service"}))
    for provider in (gateway, worker):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    http, rpc = gateway.get_tracer("http", "1.0"), worker.get_tracer("rpc")
    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    with http.start_as_current_span(
        "GET /dramas/{id}", context=remote, kind=SpanKind.SERVER, attributes=ATTRIBUTES
    ) as server:
        with http.start_as_current_span(
            "call episode.list", kind=SpanKind.CLIENT, links=[Link(REMOTE, {"why": "batch"})]
        ) as client:
            client.set_status(Status(StatusCode.ERROR, "timed out"))
            with (
                http.start_as_current_span("send rpc:episode.list", kind=SpanKind.PRODUCER),
                rpc.start_as_current_span("episode.list", kind=SpanKind.CONSUMER),
            ):
                pass
        server.set_status(StatusCode.OK)
    return list(memory.get_finished_spans())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def expected(span: ReadableSpan) -> Span:
    context = span.get_span_context()
    assert context is not None
    assert span.start_time is not None
    assert span.end_time is not None
    return Span(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent else "",
        service=str(span.resource.attributes["service.name"]),
        name=span.name,
        kind=span.kind.name,
        start_ns=span.start_time,
        end_ns=span.end_time,
        attributes={key: _plain(value) for key, value in (span.attributes or {}).items()},
        links=tuple(f"{link.context.span_id:016x}" for link in span.links),
        error=span.status.status_code is StatusCode.ERROR,
    )


def assert_same(decoded: list[Span], spans: list[ReadableSpan]) -> None:
    """Equal span for span, including the fields a span's equality leaves out."""
    want = sorted((expected(span) for span in spans), key=lambda s: s.span_id)
    got = sorted(decoded, key=lambda s: s.span_id)
    assert got == want
    assert [(s.attributes, s.links) for s in got] == [(s.attributes, s.links) for s in want]
    assert [s.duration_ms for s in got] == [s.duration_ms for s in want]


def test_the_services_json_encoder_round_trips() -> None:
    spans = made_spans()
    assert_same(request_spans(services_json(spans), is_json=True), spans)


def test_the_official_protobuf_encoder_round_trips() -> None:
    spans = made_spans()
    body = official(spans).SerializeToString()
    assert_same(request_spans(body, is_json=False), spans)


def test_the_sinks_file_line_reads_back_in_the_analyser() -> None:
    spans = made_spans()
    line = json.dumps(otlp_json(official(spans)), separators=(",", ":"))
    assert_same(list(text_spans(line)), spans)


def test_the_analyser_reads_microseconds_of_the_same_spans() -> None:
    """The analyser's unit: whole microseconds, truncated as Jaeger stores them."""
    spans = made_spans()
    for span in request_spans(services_json(spans), is_json=True):
        assert span.start_us == span.start_ns // 1000
        assert span.end_us == span.end_ns // 1000
