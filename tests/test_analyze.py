"""The trace analyser: golden traces with known answers in both of Jaeger's formats, the
invariants on random trees, the aggregate report, the CLI, Jaeger's query API, and the sink."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loadtest.analysis.breakdown import CATEGORIES, analyze
from loadtest.analysis.critical_path import TraceResult
from loadtest.analysis.traces import (
    Trace,
    TraceFormatError,
    document_spans,
    group,
    load_traces,
    normalise_id,
)
from loadtest.devstack.sink import create_app
from loadtest.otlp import otlp_json, request_from_json
from tests.conftest import running_sink
from tests.golden import T0_US, Case, G, hex_id, jaeger, otlp
from tests.golden.cases import BOTH_FORMATS, HTTP, JAEGER_ONLY, OURS, QWAIT, RPC, SIDECARS

ROOT = Path(__file__).resolve().parent.parent

Writer = Callable[[Case], Any]
FORMATS: dict[str, Writer] = {
    "jaeger": jaeger,
    "otlp-hex-numbers": otlp,
    "otlp-base64-names": lambda case: otlp(case, ids="base64", kinds="name"),
    "jaeger-v3-answer": lambda case: {"result": otlp(case, ids="base64")},
}


def analyse_one(tmp_path: Path, document: Any) -> TraceResult:
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(document))
    report = analyze(load_traces([path]))
    (result,) = report.results
    return result


def assert_answer(result: TraceResult, case: Case) -> None:
    assert [(step.span.span_id, step.self_us) for step in result.critical_path] == [
        (hex_id(name), self_us) for name, self_us in case.path
    ]
    assert result.categories == dict.fromkeys(CATEGORIES, 0) | case.categories
    assert result.duration_us == case.duration
    assert (result.orphans, result.dropped, result.not_blocking) == (
        case.orphans,
        case.dropped,
        case.not_blocking,
    )
    # What --json says, to the microsecond.
    shown = result.to_json()
    assert [round(step["self_ms"] * 1000) for step in shown["critical_path"]] == [
        self_us for _, self_us in case.path
    ]
    assert round(shown["duration_ms"] * 1000) == case.duration


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BOTH_FORMATS)
def test_golden_trace(tmp_path: Path, name: str, fmt: str) -> None:
    case = BOTH_FORMATS[name]
    assert_answer(analyse_one(tmp_path, FORMATS[fmt](case)), case)


@pytest.mark.parametrize("name", JAEGER_ONLY)
def test_golden_jaeger_only(tmp_path: Path, name: str) -> None:
    case = JAEGER_ONLY[name]
    assert_answer(analyse_one(tmp_path, jaeger(case)), case)


def test_sink_lines_split_one_trace_across_batches(tmp_path: Path) -> None:
    """The sink writes one export request a line; a trace's spans come in several."""
    document = otlp(OURS, ids="base64")
    path = tmp_path / "spans.jsonl"
    path.write_text(
        "".join(json.dumps({"resourceSpans": [r]}) + "\n" for r in document["resourceSpans"])
    )
    (result,) = analyze(load_traces([path])).results
    assert_answer(result, OURS)


def test_a_handler_that_outlives_its_reply_wait_stays_app(tmp_path: Path) -> None:
    """Jaeger's own rule would skip the handler (it ends after the reply wait begins) and call
    its whole run broker time; here it stays app."""
    (result,) = analyze(load_traces([write(tmp_path, jaeger(OURS))])).results
    process = next(s for s in result.critical_path if s.span.name.startswith("process rpc.ep"))
    assert (process.category, process.self_us) == ("app", 4800)


def write(tmp_path: Path, document: Any, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


# --- invariants on random trees ---------------------------------------------------------------

KIND_CHOICES = ["SERVER", "CLIENT", "PRODUCER", "CONSUMER", "INTERNAL"]
MARKERS: list[dict[str, Any]] = [
    {},
    {"db.system": "postgresql"},
    {"aws.s3.bucket": "b"},
    {"rpc.queue_wait_ms": 1.0},
    {"rpc.reply_wait_ms": 1.0},
    {"component": "proxy"},
    RPC,
]


@st.composite
def random_trees(draw: st.DrawFn) -> Case:
    size = draw(st.integers(1, 25))
    spans = []
    for index in range(size):
        parent = "" if index == 0 else f"s{draw(st.integers(0, index - 1))}"
        if index and draw(st.integers(0, 9)) == 0:
            parent = "missing"
        start = draw(st.integers(0, 1000))
        spans.append(
            G(
                id=f"s{index}",
                parent=parent,
                service=draw(st.sampled_from(["a", "b", "c"])),
                kind=draw(st.sampled_from(KIND_CHOICES)),
                name=f"op{index % 4}",
                start=start,
                end=start + draw(st.integers(0, 1000)),
                attributes=draw(st.sampled_from(MARKERS)),
                follows_from=bool(parent) and draw(st.integers(0, 5)) == 0,
            )
        )
    return Case(spans=spans, path=[], categories={})


# Found by the search: a delivery that starts (skewed) before the send it answers, with no
# reply, made the added call span end before it began, and a step's own time negative.
SKEWED_DELIVERY = Case(
    spans=[
        G("s0", "", "a", "SERVER", "op0", 0, 242),
        G("s1", "s0", "a", "PRODUCER", "op1", 241, 241),
        G("s2", "s1", "b", "CONSUMER", "op2", 0, 156),
        G("s3", "s1", "b", "INTERNAL", "op3", 0, 0, {"rpc.queue_wait_ms": 1.0}),
    ],
    path=[],
    categories={},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_trees())
@example(SKEWED_DELIVERY)
def test_every_microsecond_is_counted_once(case: Case) -> None:
    report = analyze(load_documents([jaeger(case)]))
    (result,) = report.results
    root = next(s for s in case.spans if hex_id(s.id) == result.root.span_id)
    assert result.duration_us == root.end - root.start
    assert sum(step.self_us for step in result.critical_path) == result.duration_us
    assert sum(result.categories.values()) == result.duration_us
    assert all(step.self_us >= 0 for step in result.critical_path)
    assert len({step.span.span_id for step in result.critical_path}) == len(result.critical_path)
    # OTLP cannot say FOLLOWS_FROM; without it, both formats give the same answer.
    plain = Case(
        spans=[G(**{**vars(s), "follows_from": False}) for s in case.spans], path=[], categories={}
    )
    via_jaeger = analyze(load_documents([jaeger(plain)])).to_json()
    via_otlp = analyze(load_documents([otlp(plain, ids="base64", kinds="name")])).to_json()
    assert via_jaeger == via_otlp


def load_documents(documents: list[Any]) -> list[Trace]:
    return group(span for document in documents for span in document_spans(document))


# --- the report over many traces --------------------------------------------------------------


def queued(index: int, queue_wait: int) -> Case:
    """A call whose only variable is its queue wait: app 800, broker 200, queue_wait q."""
    q = queue_wait
    return Case(
        trace_id=f"{index:032x}",
        spans=[
            G("A", "", "drama-service", "SERVER", "GET /x", 0, q + 1000),
            G("C", "A", "drama-service", "CLIENT", "call m", 100, q + 900, RPC),
            G("P", "C", "drama-service", "PRODUCER", "send rpc:m", 100, 200),
            G("W", "P", "episode-service", "INTERNAL", "queue wait m", 200, 200 + q, QWAIT),
            G("X", "P", "episode-service", "CONSUMER", "process q m", 200 + q, 800 + q),
        ],
        path=[],
        categories={},
    )


def test_percentiles_shares_bands_and_bottleneck() -> None:
    cases = [queued(i, 1000 * i) for i in range(1, 101)]
    document = analyze(load_documents([jaeger(c) for c in cases])).to_json()
    assert document["traces"] == 100
    waits = document["categories"]["queue_wait"]
    # 1..100 ms: linear interpolation between closest ranks, as numpy's default.
    assert waits == {
        "p50_ms": 50.5,
        "p95_ms": 95.05,
        "p99_ms": 99.01,
        "mean_ms": 50.5,
        "share": round(5_050_000 / 5_150_000, 4),
    }
    assert document["categories"]["app"]["mean_ms"] == 0.8
    assert document["categories"]["broker"]["p99_ms"] == 0.2
    assert document["bottleneck"] == {
        "category": "queue_wait",
        "where": "episode-service:queue wait m",
        "service": "episode-service",
        "operation": "queue wait m",
        "share": 0.9806,
        "mean_ms": 50.5,
        "category_share": 0.9806,
    }
    # Around p50: the traces between the 45th and 55th percentile of duration (10 of them);
    # around p99: between 98.5 and 99.5 (the one of 100 ms).
    assert document["percentiles"]["p50"]["traces"] == 10
    assert document["percentiles"]["p50"]["duration_ms"] == 51.5
    assert document["percentiles"]["p99"]["traces"] == 1
    assert document["percentiles"]["p99"]["duration_ms"] == 100.0
    assert document["percentiles"]["p99"]["categories_ms"]["queue_wait"] == 99.0
    assert document["critical_path"]["episode-service:queue wait m"]["p99_share"] == 0.99
    app = document["critical_path"]["episode-service:process q m"]
    assert app["mean_ms"] == 0.6
    assert app["p99_share"] == 0.006
    assert document["sides"] == {
        "queue": {"categories": ["queue_wait"]} | waits,
        "wire": {
            "categories": ["transit", "broker", "reply_wait", "network"],
            **dict.fromkeys(["p50_ms", "p95_ms", "p99_ms", "mean_ms"], 0.2),
            "share": round(20_000 / 5_150_000, 4),
        },
    }
    shares = sum(stats["share"] for stats in document["categories"].values())
    assert shares == pytest.approx(1, abs=1e-3)


NUMBER = {"type": "number"}
STATS = {
    "type": "object",
    "required": ["p50_ms", "p95_ms", "p99_ms", "mean_ms", "share"],
    "properties": dict.fromkeys(["p50_ms", "p95_ms", "p99_ms", "mean_ms", "share"], NUMBER),
}
SHAPE = {
    "type": "object",
    "required": ["traces", "categories", "critical_path", "bottleneck", "per_trace"],
    "properties": {
        "traces": {"type": "integer"},
        "categories": {
            "type": "object",
            "required": list(CATEGORIES),
            "additionalProperties": STATS,
        },
        "critical_path": {
            "type": "object",
            "propertyNames": {"pattern": "^[^:]+:.+$"},
            "additionalProperties": {
                "type": "object",
                "required": ["mean_ms", "share"],
                "properties": {"mean_ms": NUMBER, "share": NUMBER},
            },
        },
        "bottleneck": {
            "type": "object",
            "required": ["category", "where", "share"],
            "properties": {
                "category": {"enum": list(CATEGORIES)},
                "where": {"type": "string", "pattern": "^[^:]+:.+$"},
                "share": NUMBER,
            },
        },
        "per_trace": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["trace_id", "duration_ms", "categories", "critical_path"],
                "properties": {
                    "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "duration_ms": NUMBER,
                    "categories": {
                        "type": "object",
                        "required": list(CATEGORIES),
                        "additionalProperties": NUMBER,
                    },
                    "critical_path": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["span_id", "service", "operation", "self_ms"],
                            "properties": {
                                "span_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                                "service": {"type": "string"},
                                "operation": {"type": "string"},
                                "self_ms": NUMBER,
                            },
                        },
                    },
                },
            },
        },
    },
}


def assert_adds_up(document: dict[str, Any]) -> None:
    """Per trace, the path and the categories each add up to the duration, to the microsecond."""
    for one in document["per_trace"]:
        duration = round(one["duration_ms"] * 1000)
        assert sum(round(step["self_ms"] * 1000) for step in one["critical_path"]) == duration
        assert sum(round(ms * 1000) for ms in one["categories"].values()) == duration


# --- the command line -------------------------------------------------------------------------


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest",
        "analyze",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.integration
async def test_cli_json_on_files_of_both_formats(tmp_path: Path) -> None:
    first = write(tmp_path, jaeger(OURS), "ours.json")
    second = write(tmp_path, otlp(HTTP, ids="base64", kinds="name"), "http.json")
    code, out, err = await run_cli("--input", str(first), "--input", str(second), "--json")
    assert code == 0, err
    document = json.loads(out)
    jsonschema.validate(document, SHAPE)
    assert document["traces"] == 2
    assert_adds_up(document)
    # 8 ms of S3 in one trace, 1.6 ms in the other, of 34 ms in all.
    assert document["bottleneck"]["category"] == "s3"
    assert document["bottleneck"]["where"] == "stream-service:S3 presign"
    assert document["bottleneck"]["share"] == round(9600 / 34000, 4)
    assert document["categories"]["network"]["share"] == round(2300 / 34000, 4)


@pytest.mark.integration
async def test_cli_table_and_filters(tmp_path: Path) -> None:
    other = Case(
        trace_id="1" * 32,
        spans=[G("r", "", "drama-service", "SERVER", "GET /dramas", 0, 500)],
        path=[],
        categories={},
    )
    files = [write(tmp_path, jaeger(OURS), "a.json"), write(tmp_path, jaeger(other), "b.json")]
    inputs = [arg for path in files for arg in ("--input", str(path))]
    code, out, err = await run_cli(*inputs)
    assert code == 0, err
    assert out.startswith("2 traces")
    assert re.search(r"^queue_wait\s+1\.275\s", out, re.MULTILINE)  # 2.55 ms and 0: p50 1.275
    assert "bottleneck: s3 at stream-service:S3 presign" in out

    code, out, _ = await run_cli(*inputs, "--operation", "GET /dramas", "--json")
    assert json.loads(out)["traces"] == 1
    code, out, _ = await run_cli(*inputs, "--service", "stream-service", "--json")
    assert [t["trace_id"] for t in json.loads(out)["per_trace"]] == [OURS.trace_id]
    code, _, err = await run_cli(*inputs, "--min-traces", "3")
    assert code == 1
    assert "2 traces, fewer than --min-traces 3" in err
    code, _, err = await run_cli("--input", str(write(tmp_path, {"spans": []}, "bad.json")))
    assert code == 1
    assert "expected Jaeger JSON" in err


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.integration
async def test_cli_plot_and_html(tmp_path: Path) -> None:
    cases = [queued(i, 1000 * i) for i in range(1, 21)]
    path = write(tmp_path, {"data": [jaeger(c)["data"][0] for c in cases]})
    plot, page = tmp_path / "breakdown.png", tmp_path / "report.html"
    code, _, err = await run_cli("--input", str(path), "--plot", str(plot), "--html", str(page))
    assert code == 0, err
    assert png_size(plot.read_bytes()) == (1100, 450)
    text = page.read_text()
    (image,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert png_size(base64.b64decode(image)) == (1100, 450)
    assert "<style>" in text
    assert "bottleneck: queue_wait at episode-service:queue wait m" in text
    assert "<td>episode-service:queue wait m</td>" in text
    # The headline: queue against wire, with the categories that make each side.
    assert "queue (queue_wait): p50 10.500 ms" in text
    assert "wire (transit + broker + reply_wait + network): p50 0.200 ms" in text
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:)', text)


# --- Jaeger's query API -----------------------------------------------------------------------


async def jaeger_query(v3: bool) -> tuple[TestServer, list[tuple[str, dict[str, str]]]]:
    """A stand-in for Jaeger's query service serving golden answers (tests the HTTP reader)."""
    asked: list[tuple[str, dict[str, str]]] = []

    async def v3_traces(request: web.Request) -> web.Response:
        asked.append((request.path, dict(request.query)))
        if not v3:
            raise web.HTTPNotFound
        return web.json_response({"result": otlp(OURS, ids="base64")})

    async def v1_traces(request: web.Request) -> web.Response:
        asked.append((request.path, dict(request.query)))
        return web.json_response(jaeger(HTTP))

    app = web.Application()
    app.router.add_get("/api/v3/traces", v3_traces)
    app.router.add_get("/api/traces", v1_traces)
    server = TestServer(app)
    await server.start_server()
    return server, asked


@pytest.mark.integration
@pytest.mark.parametrize("v3", [True, False], ids=["v3-otlp", "v1-fallback"])
async def test_jaeger_query_api(v3: bool) -> None:
    server, asked = await jaeger_query(v3)
    try:
        url = str(server.make_url("/"))
        code, out, err = await run_cli(
            "--jaeger", url, "--service", "drama-service", "--lookback", "2h", "--limit", "50",
            "--json",
        )  # fmt: skip
    finally:
        await server.close()
    assert code == 0, err
    document = json.loads(out)
    expected = OURS if v3 else HTTP
    assert [t["trace_id"] for t in document["per_trace"]] == [expected.trace_id]
    assert round(document["per_trace"][0]["duration_ms"] * 1000) == expected.duration
    path, query = asked[0]
    assert path == "/api/v3/traces"
    assert query["query.service_name"] == "drama-service"
    assert query["query.search_depth"] == "50"
    window = [query["query.start_time_min"], query["query.start_time_max"]]
    start, end = (dt_parse(stamp) for stamp in window)
    assert end - start == pytest.approx(7200)
    if not v3:
        assert asked[1][0] == "/api/traces"
        assert (asked[1][1]["service"], asked[1][1]["limit"]) == ("drama-service", "50")


def dt_parse(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


# --- the sink: a real OTLP exporter -> sink over HTTP -> file -> analyser ---------------------


def export_ours(endpoint: str) -> None:
    """The golden request-reply trace, exported by the OTel SDK of each 'service'."""
    providers = {
        service: TracerProvider(resource=Resource.create({"service.name": service}))
        for service in sorted({span.service for span in OURS.spans})
    }
    for provider in providers.values():
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    made: dict[str, trace.Span] = {}
    for span in OURS.spans:  # parents come first in the case
        tracer = providers[span.service].get_tracer("golden")
        context = trace.set_span_in_context(made[span.parent]) if span.parent else None
        made[span.id] = tracer.start_span(
            span.name,
            context=context,
            kind=trace.SpanKind[span.kind],
            attributes=span.attributes,
            start_time=(T0_US + span.start) * 1000,
        )
    for span in OURS.spans:
        made[span.id].end(end_time=(T0_US + span.end) * 1000)
    for provider in providers.values():
        provider.shutdown()


@pytest.mark.integration
async def test_sink_stores_what_an_exporter_sends(tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    with running_sink(out) as url:
        await asyncio.to_thread(export_ours, f"{url}/v1/traces")
        assert await count_spans(url) == {"spans": len(OURS.spans)}
    lines = out.read_text().splitlines()
    assert len(lines) == len(OURS.spans)  # SimpleSpanProcessor: one request per span
    assert re.search(r'"spanId":"[0-9a-f]{16}"', lines[0])  # hex, as OTLP/JSON asks
    (result,) = analyze(load_traces([out])).results
    names = {hex_id(span.id): span.name for span in OURS.spans}
    assert [(step.span.name, step.self_us) for step in result.critical_path] == [
        (names[hex_id(name)], self_us) for name, self_us in OURS.path
    ]
    assert result.categories == dict.fromkeys(CATEGORIES, 0) | OURS.categories


async def count_spans(url: str) -> Any:
    """The sink's span count, the endpoint loadtest/bench/command.py reads."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/count", raise_for_status=True) as response,
    ):
        return await response.json()


def test_sink_json_is_protobufs_json_with_hex_ids() -> None:
    """Every field of what the SDK exports survives: parsed back (ids as base64, which
    protobuf's JSON mapping expects), the line is the very request the exporter sent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("golden", "1.0", schema_url="https://opentelemetry.io/schemas/1")
    with tracer.start_as_current_span("parent", kind=trace.SpanKind.SERVER) as parent:
        link = trace.Link(parent.get_span_context(), {"why": "batch"})
        with tracer.start_as_current_span("child", links=[link]) as child:
            child.set_attributes(
                {"s": "x", "b": True, "i": -(2**40), "f": 0.5, "l": [1, 2], "t": ("a", "b")}
            )
            child.add_event("retry", {"attempt": 2})
            child.set_status(trace.StatusCode.ERROR, "boom")
    provider.shutdown()
    request = encode_spans(exporter.get_finished_spans())
    line = json.dumps(otlp_json(request))
    assert re.search(r'"parentSpanId": "[0-9a-f]{16}"', line)
    assert request_from_json(line.encode()) == request


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of a Markdown text ("" for unnamed ones)."""
    blocks, current, inside = [], "", None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), ""
                continue
            if inside == language:
                blocks.append(current)
            inside = None
        elif inside is not None:
            current += line
    return blocks


def test_docs_snippet_and_worked_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/analysis.md's code runs, and its worked examples are what the analyser says."""
    text = (ROOT / "docs" / "analysis.md").read_text()
    write(tmp_path, otlp(OURS), "spans.jsonl")
    monkeypatch.chdir(tmp_path)
    (snippet,) = fenced_blocks(text, "python")
    exec(snippet, {})  # noqa: S102 - the documentation's own example
    for case in (OURS, SIDECARS):
        (result,) = analyze(load_traces([write(tmp_path, otlp(case))])).results
        width = max(16, *(len(s.service) for s in case.spans))
        shown = "\n".join(
            f"{s.span.service:{width}} {s.span.kind:9} {s.category:11} {s.self_us / 1000:6.3f} "
            f"{s.span.name}"
            for s in result.critical_path
        )
        assert shown + "\n" in fenced_blocks(text, "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00f067aa0ba902b7", "00f067aa0ba902b7"),  # hex
        ("00F067AA0BA902B7", "00f067aa0ba902b7"),  # upper-case hex
        ("f067aa0ba902b7", "00f067aa0ba902b7"),  # hex without its leading zeros (Jaeger)
        ("APBnqgupArc=", "00f067aa0ba902b7"),  # base64 (protobuf's JSON)
        ("APBnqgupArc", "00f067aa0ba902b7"),  # base64 without padding
    ],
)
def test_span_ids_in_any_spelling(raw: str, expected: str) -> None:
    assert normalise_id(raw, 8) == expected


def test_an_id_that_is_neither_is_an_error() -> None:
    with pytest.raises(TraceFormatError, match="neither hex nor base64"):
        normalise_id("not an id!", 8)


async def test_sink_without_out_only_counts(aiohttp_client: Any) -> None:
    """What loadtest/bench/command.py runs: no file, the count, and a 400 for what is not OTLP."""
    client = await aiohttp_client(create_app())
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name="a")
    headers = {"Content-Type": "application/x-protobuf"}
    response = await client.post("/v1/traces", data=request.SerializeToString(), headers=headers)
    assert response.status == 200
    response = await client.post("/v1/traces", data=b"\xff not protobuf", headers=headers)
    assert response.status == 400
    assert await (await client.get("/count")).json() == {"spans": 1}


def test_a_trace_of_parent_cycles_has_no_root_and_is_left_out() -> None:
    loop = Case(
        trace_id="2" * 32,
        spans=[G("x", "y", "s", "SERVER", "x", 0, 10), G("y", "x", "s", "SERVER", "y", 0, 10)],
        path=[],
        categories={},
    )
    report = analyze(load_documents([jaeger(loop), jaeger(HTTP)]))
    assert [result.trace_id for result in report.results] == [HTTP.trace_id]


async def test_sink_keeps_json_exports_as_they_came(aiohttp_client: Any, tmp_path: Path) -> None:
    """JSON exports are counted without being parsed, written to the file as sent, and what is
    not an export (not an object, spans in bad UTF-8) is refused with a 400, never written."""
    out = tmp_path / "spans.jsonl"
    client = await aiohttp_client(create_app(out))
    headers = {"Content-Type": "application/json"}
    span = {"traceId": "1" * 32, "spanId": "2" * 16, "name": "a"}
    sent = msgspec.json.encode({"resourceSpans": [{"scopeSpans": [{"spans": [span, span]}]}]})
    response = await client.post("/v1/traces", data=sent, headers=headers)
    assert response.status == 200
    pretty = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}, indent=2)
    assert (await client.post("/v1/traces", data=pretty, headers=headers)).status == 200
    for bad in (b"[1, 2]", b'{"resourceSpans": [{"scopeSpans": [{"spans": ["\xff"]}]}]}'):
        assert (await client.post("/v1/traces", data=bad, headers=headers)).status == 400
    assert await (await client.get("/count")).json() == {"spans": 3}
    await client.close()  # the writer flushes and stops
    lines = out.read_text().splitlines()
    assert lines[0] == sent.decode()
    assert json.loads(lines[1]) == json.loads(pretty)
    assert len(lines) == 2
