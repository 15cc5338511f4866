"""The OTLP/JSON span exporter (`broker.telemetry.otlp`, `broker.telemetry.otlp_encode`): same
message as the official encoder, delivered.

- equivalence: spans of a real SDK, of every shape, encoded here and parsed back with protobuf's
  JSON parser, equal the official ``encode_spans`` message for message;
- delivery: a BatchSpanProcessor sends to ``python -m loadtest sink``, whose file the analyser
  reads; transient failures are retried, final ones are not, a dead endpoint fails in time;
- selection: ``configure_tracing`` uses it by default (``otlp`` with no protocol, or
  ``http/json``) and the official one for http/protobuf; by name, ``OTEL_TRACES_EXPORTER=otlp_json``
  (an entry point the SDK's own configurator finds too).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as official
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AnyValue

from broker.service import ConfigError
from broker.telemetry import LeanSpan, LeanTracerProvider
from broker.telemetry import otlp_encode as _otlp_encode
from broker.telemetry.otlp import OtlpJsonSpanExporter, encode_spans
from loadtest.analysis.traces import load_traces
from loadtest.bench import export as bench_export
from loadtest.otlp import request_from_json
from tests.conftest import free_port, running_sink

REMOTE = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=trace.TraceState([("vendor", "v1"), ("other", "x")]),
)
ATTRIBUTES: dict[str, AnyValue] = {
    "str": "plain",
    "escaped": 'quote " backslash \\ newline \n tab \t nul \x00 ünï 字 🎬',
    "empty": "",
    "true": True,
    "false": False,
    "zero": 0,
    "int": 42,
    "negative": -7,
    "int64 max": 2**63 - 1,
    "int64 min": -(2**63),
    "float": 3.25,
    "tiny": 5e-324,
    "infinite": math.inf,
    "minus infinite": -math.inf,
    "str array": ["a", "b", ""],
    "bool array": [True, False],
    "int array": [1, -2, 2**40],
    "float array": [0.5, -1.0],
    "empty array": [],
}


def varied_spans() -> list[ReadableSpan]:
    """Spans of two resources and several scopes, interleaved, covering every field."""
    memory = InMemorySpanExporter()
    first = TracerProvider(
        resource=Resource({"service.name": "one", "deployment.replica": 3, "on": True}, "s://r1")
    )
    limited = TracerProvider(
        resource=Resource({"service.name": "two", "weights": [0.5, 1.5]}),
        span_limits=SpanLimits(
            max_span_attributes=2,
            max_events=1,
            max_links=1,
            max_event_attributes=1,
            max_link_attributes=1,
        ),
    )
    # Equal to `first`'s resource and scope but other objects: grouped with them all the same.
    twin = TracerProvider(resource=Resource(dict(first.resource.attributes), "s://r1"))
    for provider in (first, limited, twin):
        provider.add_span_processor(SimpleSpanProcessor(memory))
    scoped = first.get_tracer("lib.a", "1.2.3", schema_url="s://a", attributes={"scope.n": 1})
    bare = first.get_tracer("lib.b")
    capped = limited.get_tracer("lib.c", "0.1")

    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    link_to_remote = Link(REMOTE, {"link.kind": "remote", "n": 2})
    with scoped.start_as_current_span(
        "server", context=remote, kind=SpanKind.SERVER, attributes=ATTRIBUTES
    ) as server:
        server.add_event("started", {"at": 1, "what": "x"}, timestamp=1_700_000_000_123_456_789)
        server.add_event("bare")
        with bare.start_as_current_span("client", kind=SpanKind.CLIENT, links=[link_to_remote]):
            pass
        with capped.start_as_current_span("capped", kind=SpanKind.PRODUCER) as span:
            span.set_attributes({"a": 1, "b": 2, "c": 3})
            span.add_event("e1", {"x": 1, "y": 2})
            span.add_event("e2")
        for kind in (SpanKind.CONSUMER, SpanKind.INTERNAL):
            with scoped.start_as_current_span(f"as {kind.name}", kind=kind):
                pass
        with twin.get_tracer(
            "lib.a", "1.2.3", schema_url="s://a", attributes={"scope.n": 1}
        ).start_as_current_span("from the twin"):
            pass
        server.set_status(Status(StatusCode.ERROR, "it failed: 'quoted'"))
    with bare.start_as_current_span("ok root", links=[Link(server.get_span_context())]) as ok:
        ok.set_status(StatusCode.OK)
    with capped.start_as_current_span("capped links", links=[link_to_remote, link_to_remote]):
        pass
    scopeless = ReadableSpan(
        name="no scope",
        context=SpanContext(0x1, 0x2, is_remote=False),
        resource=first.resource,
        start_time=10,
        end_time=20,
    )
    return [*memory.get_finished_spans(), scopeless]


def test_json_is_the_official_message_in_otlp_json() -> None:
    spans = varied_spans()
    expected = official(spans)
    got = request_from_json(encode_spans(spans))

    expected_spans = [
        (resource.resource, scope.scope, span)
        for resource in expected.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    got_spans = [
        (resource.resource, scope.scope, span)
        for resource in got.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert len(got_spans) == len(expected_spans) == len(spans)
    for (resource, scope, span), (want_resource, want_scope, want_span) in zip(
        got_spans, expected_spans, strict=True
    ):  # one by one first, so that a failure names the span and shows it
        assert span == want_span, json_format.MessageToDict(want_span)
        assert scope == want_scope, want_span.name
        assert resource == want_resource, want_span.name
    assert got == expected  # and the grouping: resources, scopes, their order, schema URLs
    assert len(got.resource_spans) == 2
    assert [len(r.scope_spans) for r in got.resource_spans] == [3, 1]
    assert sum(s.dropped_attributes_count for _, _, s in got_spans) > 0  # the limits did bite


def test_the_json_is_otlp_json_not_protobuf_json() -> None:
    """Ids in lower-case hex, enums as numbers, 64-bit integers as strings (OTLP spec)."""
    document = json.loads(encode_spans(varied_spans()))
    span = next(
        span
        for resource in document["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
        if span["name"] == "server"
    )
    assert span["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span["parentSpanId"] == "00f067aa0ba902b7"
    assert span["traceState"] == "vendor=v1,other=x"
    assert span["kind"] == 2
    assert span["flags"] == 0x300  # the parent is remote
    assert isinstance(span["startTimeUnixNano"], str)
    assert span["status"] == {"code": 2, "message": "it failed: 'quoted'"}
    values = {pair["key"]: pair["value"] for pair in span["attributes"]}
    assert values["int64 max"] == {"intValue": str(2**63 - 1)}
    assert values["infinite"] == {"doubleValue": "Infinity"}
    assert values["bool array"] == {
        "arrayValue": {"values": [{"boolValue": True}, {"boolValue": False}]}
    }
    assert span["events"][0]["timeUnixNano"] == "1700000000123456789"


def plain_spans() -> list[ReadableSpan]:
    """Spans of the common shape, which `encode_spans` writes without a dict: no events, links,
    trace state or dropped counts, status unset. Every kind, a root, a remote parent, names and keys
    to escape (``%`` too: a key's JSON is kept as a template) and every kind of value."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "plain"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lib.plain", "1.0")
    parent = SpanContext(  # as REMOTE, but with no trace state
        REMOTE.trace_id, REMOTE.span_id, is_remote=True, trace_flags=REMOTE.trace_flags
    )
    odd: dict[str, AnyValue] = {"100%": "yes", "%d %s": 1, "%": 0.5, 'a "key"': True, "%%": [1]}
    with tracer.start_as_current_span(
        'quote " backslash \\ ünï 字 🎬 %s %d',
        context=trace.set_span_in_context(NonRecordingSpan(parent)),
        kind=SpanKind.SERVER,
        attributes=ATTRIBUTES | odd,
    ):
        for kind in SpanKind:
            with tracer.start_as_current_span(f"as {kind.name}", kind=kind, attributes=odd):
                pass
        with tracer.start_as_current_span("no attributes"):
            pass
    with tracer.start_as_current_span("root", attributes={"n": 1}):
        pass
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("kept", [4096, 0], ids=["keys kept", "no room to keep keys"])
def test_spans_of_the_common_shape_are_the_official_message_too(
    monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    # Empty caches: the first encoding makes every key's start and template.
    monkeypatch.setattr(_otlp_encode, "_keys", {})
    fresh: dict[type, dict[str, bytes]] = {kind: {} for kind in _otlp_encode._VALUE_TEMPLATES}
    monkeypatch.setattr(_otlp_encode, "_templates", fresh)
    monkeypatch.setattr(_otlp_encode, "_KEYS_KEPT", kept)
    spans = plain_spans()
    assert len(spans) == 3 + len(SpanKind)
    body = encode_spans(spans)
    assert encode_spans(spans) == body  # with the keys kept from the first time
    # Not the dict of the other spans: written directly.
    monkeypatch.setattr(_otlp_encode, "_span", None)
    assert encode_spans(spans) == body
    assert request_from_json(body) == official(spans)


class _Key(str):
    pass


class _Float(float):  # as numpy.float64, which the SDK takes for a float
    pass


def test_odd_attributes_are_kept_or_dropped_as_the_official_encoder_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attributes: dict[Any, AnyValue] = {
        1: "a key that is no str",
        "beyond int64": 2**64,
        "below int64": -(2**63) - 1,
        "lone surrogate": "a\ud800b",
        _Key("a str subclass key"): "kept",
        "a float subclass": _Float(1.5),
        "percent": "100% %s %d %%",
        "one more beyond int64": [1, 2**64],
        "plain": 1,
    }
    span = ReadableSpan(
        name="odd",
        context=SpanContext(0x1, 0x2, is_remote=False),
        resource=Resource({}),
        attributes=attributes,
        start_time=10,
        end_time=20,
    )
    got = request_from_json(encode_spans([span]))
    assert got == official([span])  # one attribute dropped is one attribute, not the batch
    kept = [pair.key for pair in got.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert kept == ["a str subclass key", "a float subclass", "percent", "plain"]
    for dropped in (1, "beyond int64", "below int64", "lone surrogate", "one more beyond int64"):
        assert f"span attribute {dropped!r} not exported" in caplog.text


def test_a_span_of_another_class_is_read_through_its_properties() -> None:
    class Derived(ReadableSpan):
        @property
        def events(self) -> tuple[Event, ...]:
            return (Event("only seen here", timestamp=15),)

    span = Derived(
        name="derived",
        context=SpanContext(0x1, 0x2, is_remote=False),
        resource=Resource({}),
        start_time=10,
        end_time=20,
    )
    assert request_from_json(encode_spans([span])) == official([span])
    assert b"only seen here" in encode_spans([span])


def test_the_services_lean_spans_keep_their_events_and_links() -> None:
    """The services' tracers hand the exporter LeanSpans, whose lists are read directly."""
    memory = InMemorySpanExporter()
    provider = LeanTracerProvider(resource=Resource({"service.name": "lean"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("lib.lean")
    with tracer.start_as_current_span("plain", attributes={"n": 1}):
        pass
    with tracer.start_as_current_span("with an event") as span:
        span.add_event("cached", {"hit": True})
    with tracer.start_as_current_span("with a link", links=[Link(REMOTE)]):
        pass
    spans = list(memory.get_finished_spans())
    assert {type(span) for span in spans} == {LeanSpan}
    body = encode_spans(spans)
    assert request_from_json(body) == official(spans)
    assert b"cached" in body
    assert body.count(b'"links"') == 1


# --- delivery ---------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_batch_processor_delivers_spans_to_the_sink_and_the_analyser_reads_them(
    tmp_path: Path, compression: str
) -> None:
    out = tmp_path / "spans.jsonl"
    with running_sink(out) as url:
        exporter = OtlpJsonSpanExporter(f"{url}/v1/traces", compression=compression)
        provider = TracerProvider(resource=Resource({"service.name": "e2e-service"}))
        provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64))
        tracer = provider.get_tracer("e2e")
        with tracer.start_as_current_span("GET /dramas/{id}", kind=SpanKind.SERVER) as root:
            root.set_attributes({"http.response.status_code": 200, "ratio": 0.25, "tags": ["a"]})
            with (
                tracer.start_as_current_span("call episode.list", kind=SpanKind.CLIENT),
                tracer.start_as_current_span("send rpc:episode.list", kind=SpanKind.PRODUCER),
            ):
                pass
        for n in range(200):  # several batches
            with tracer.start_as_current_span(f"filler {n}"):
                pass
        assert provider.force_flush(10_000)
        with urllib.request.urlopen(f"{url}/count", timeout=5) as response:  # noqa: S310
            assert json.load(response) == {"spans": 203}
        provider.shutdown()

    traces = {t.trace_id: t for t in load_traces([out])}
    assert len(traces) == 201
    trace_id = f"{root.get_span_context().trace_id:032x}"
    spans = {span.name: span for span in traces[trace_id].spans}
    assert set(spans) == {"GET /dramas/{id}", "call episode.list", "send rpc:episode.list"}
    server = spans["GET /dramas/{id}"]
    client = spans["call episode.list"]
    producer = spans["send rpc:episode.list"]
    assert (server.kind, client.kind, producer.kind) == ("SERVER", "CLIENT", "PRODUCER")
    assert (server.parent_id, client.parent_id, producer.parent_id) == (
        "",
        server.span_id,
        client.span_id,
    )
    assert {s.service for s in spans.values()} == {"e2e-service"}
    assert server.attributes == {"http.response.status_code": 200, "ratio": 0.25, "tags": ["a"]}
    assert isinstance(root, ReadableSpan)  # the SDK's own times, in µs as the analyser keeps them
    assert root.start_time is not None
    assert root.end_time is not None
    assert (server.start_us, server.end_us) == (root.start_time // 1000, root.end_time // 1000)


@dataclass
class Collector:
    """An OTLP/HTTP endpoint in this test's loop that answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)
    url: str = ""

    async def export(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        if self.statuses:
            return web.Response(status=self.statuses.pop(0), text="no, and no secrets either")
        return web.json_response({})

    def spans(self, index: int) -> list[str]:
        export = request_from_json(self.bodies[index])
        return [s.name for r in export.resource_spans for c in r.scope_spans for s in c.spans]


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", found.export)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}/v1/traces"
    yield found
    await runner.cleanup()


def some_spans(count: int = 3) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for n in range(count):
        with provider.get_tracer("t").start_as_current_span(f"span {n}"):
            pass
    return list(memory.get_finished_spans())


async def test_one_connection_serves_every_export(collector: Collector) -> None:
    exporter = OtlpJsonSpanExporter(collector.url)
    for _ in range(3):
        assert await asyncio.to_thread(exporter.export, some_spans()) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(collector.peers) == 3
    assert len(set(collector.peers)) == 1, collector.peers  # kept alive, not reopened
    assert collector.headers[0]["Content-Type"] == "application/json"
    assert collector.spans(0) == ["span 0", "span 1", "span 2"]


async def test_a_transient_failure_is_retried_after_a_backoff(collector: Collector) -> None:
    collector.statuses = [503]
    exporter = OtlpJsonSpanExporter(collector.url, timeout=5)
    started = time.monotonic()
    assert await asyncio.to_thread(exporter.export, some_spans()) is SpanExportResult.SUCCESS
    assert time.monotonic() - started >= 0.8  # the first backoff: 1 s ± 20%
    assert len(collector.bodies) == 2
    assert collector.bodies[0] == collector.bodies[1]
    exporter.shutdown()


async def test_a_final_failure_is_not_retried_and_no_header_is_logged(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    collector.statuses = [400]
    secret = "Bearer s3cr3t-t0ken"  # noqa: S105 (a test value, to find in the logs)
    exporter = OtlpJsonSpanExporter(collector.url, headers={"authorization": secret})
    assert await asyncio.to_thread(exporter.export, some_spans()) is SpanExportResult.FAILURE
    assert len(collector.bodies) == 1
    assert collector.headers[0]["Authorization"] == secret  # sent...
    assert "HTTP 400" in caplog.text
    assert "s3cr3t" not in caplog.text  # ...never logged
    exporter.shutdown()


async def test_an_unreachable_endpoint_fails_within_the_timeout() -> None:
    exporter = OtlpJsonSpanExporter(f"http://127.0.0.1:{free_port()}/v1/traces", timeout=1.5)
    started = time.monotonic()
    assert await asyncio.to_thread(exporter.export, some_spans()) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2.5
    exporter.shutdown()


def test_settings_come_from_the_standard_variables() -> None:
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TIMEOUT"):
        OtlpJsonSpanExporter.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="compression"):
        OtlpJsonSpanExporter.from_env({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"})


async def test_the_signal_specific_variables_win(collector: Collector) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # discard: not used
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=general",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=drama,api-key=k%3Dv",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip",
    }
    exporter = OtlpJsonSpanExporter.from_env(environ)
    assert await asyncio.to_thread(exporter.export, some_spans()) is SpanExportResult.SUCCESS
    exporter.shutdown()
    sent = collector.headers[0]
    assert (sent["x-team"], sent["api-key"], sent["Content-Encoding"]) == ("drama", "k=v", "gzip")


# --- configure_tracing ------------------------------------------------------------------------

_SERVICE = textwrap.dedent(
    """
    import os
    from broker.telemetry import configure_tracing
    provider = configure_tracing("chosen", os.environ)
    provider.get_tracer("t").start_span("one").end()
    provider.shutdown()
    """
)


async def run_service(collector: Collector, **env: str) -> tuple[int, str]:
    """A process that calls ``configure_tracing`` as the services do, then ends one span."""
    base = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url[: -len("/v1/traces")],
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVICE, env=base | env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    return process.returncode or 0, stderr.decode()


@pytest.mark.parametrize(
    ("env", "content_type"),
    [
        # The SDK's default: the project's exporter is opt-in (docs/adr/otel-json-exporter.md).
        ({}, "application/x-protobuf"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "application/json"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "application/x-protobuf"),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
            },
            "application/json",
        ),
        # By name, among the SDK's opentelemetry_traces_exporter entry points.
        ({"OTEL_TRACES_EXPORTER": "otlp_json"}, "application/json"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp_json", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            "application/json",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, "application/x-protobuf"),
    ],
)
@pytest.mark.integration
async def test_configure_tracing_sends_what_the_variables_name(
    collector: Collector, env: dict[str, str], content_type: str
) -> None:
    code, stderr = await run_service(collector, **env)
    assert code == 0, stderr
    assert [h["Content-Type"] for h in collector.headers] == [content_type]


_ENTRY_POINT = textwrap.dedent(
    """
    from importlib.metadata import entry_points
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    (found,) = entry_points(group="opentelemetry_traces_exporter", name="otlp_json")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found.load()()))
    provider.get_tracer("t").start_span("one").end()
    provider.shutdown()
    """
)


@pytest.mark.integration
async def test_the_entry_point_builds_the_exporter_from_the_environment(
    collector: Collector,
) -> None:
    """As the SDK's own configurator builds an exporter: the class, called with no arguments."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ENTRY_POINT,
        env={
            "PATH": "/usr/bin:/bin",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=drama",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert [(h["Content-Type"], h["x-team"]) for h in collector.headers] == [
        ("application/json", "drama")
    ]


@pytest.mark.integration
async def test_configure_tracing_rejects_other_protocols(collector: Collector) -> None:
    code, stderr = await run_service(collector, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    assert code != 0
    assert "ConfigError: OTEL_EXPORTER_OTLP_PROTOCOL must be http/json or http/protobuf" in stderr
    assert collector.headers == []


@pytest.mark.integration
def test_the_export_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m loadtest.bench.export``, tiny: both exporters deliver, the table is printed."""
    assert bench_export.main(["--rounds", "1", "--batch", "16", "--repeat", "1"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("µs a span, batch 16")
    assert "encode" in table
    assert "export" in table
