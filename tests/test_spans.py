"""broker.telemetry.spans: the lean spans make what the SDK's make, field by field, limits and
warnings included, against whatever SDK is installed (CI runs this file on the newest too:
.github/workflows/otel-newest.yml); configure_tracing installs them when
OTEL_PYTHON_TRACER_PROVIDER=lean_tracer_provider says so, and falls back to the SDK's spans when
the SDK lacks what they read."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState

from broker.service import ConfigError
from broker.telemetry import LeanSpan, LeanTracerProvider, configure_tracing
from broker.telemetry.spans_check import lean_spans_unsupported

NOW = 10**15  # times at or above this came from the clock, not from the test


class CountingIds(RandomIdGenerator):
    """Ids 1, 2, 3...: the two providers give their spans the same ones (random, it says)."""

    def __init__(self) -> None:
        self._spans = itertools.count(1)
        self._traces = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self._spans)

    def generate_trace_id(self) -> int:
        return next(self._traces)


class RecordOnly(Sampler):
    """Parent-based, always on at the root; a span named ``record only`` is recorded, not
    sampled, with the sampler's own trace state and attribute."""

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if name == "record only":
            said = {"sampler": "said so", **(attributes or {})}
            return SamplingResult(Decision.RECORD_ONLY, said, TraceState([("k", "v")]))
        return ParentBased(ALWAYS_ON).should_sample(
            parent_context, trace_id, name, kind, attributes, links
        )

    def get_description(self) -> str:
        return "RecordOnly"


Unexported = tuple[trace.SpanContext, bool, list[tuple[str, Any]]]


def scenario(tracer: trace.Tracer) -> list[Unexported]:
    """Everything a span is asked to do here and in the stock instrumentation, and more.
    Returns what can be seen of the spans that are not exported."""
    unexported: list[Unexported] = []
    remote = trace.SpanContext(7, 8, is_remote=True, trace_flags=trace.TraceFlags(1))
    root = tracer.start_span(
        "root",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "server.port": 8080, "ok": True, "f": 1.5},
        links=[Link(remote, {"link.n": 1})],
        start_time=1000,
    )
    root.set_attribute("server.port", 8081)  # again: the SDK moves it to the end
    root.set_attributes({"fifth": 5, "sixth": 6})  # one past the limit of 5
    with trace.use_span(root, end_on_exit=False):
        with tracer.start_as_current_span("child", kind=SpanKind.CLIENT, start_time=1100) as child:
            child.set_attribute("plain", "v")
            child.set_attribute("too long for the limit", "0123456789abcdef")
            child.set_attribute("sequence", ["a", "b"])
            child.set_attribute("nothing", None)
            child.set_attribute("", "no key")
            child.set_attribute("plain", "again")  # the same key: moved to the end
            child.set_attributes({"after": 1, "mapping": {"k": "v"}, "last": 2.5})
            child.add_event("cached", {"hit": True}, timestamp=1150)
            child.add_link(remote, {"late": True})
            child.update_name("child renamed")
            child.set_status(StatusCode.OK)
            child.set_status(StatusCode.ERROR, "ignored once OK")
        with tracer.start_as_current_span("full", start_time=1200) as full:
            full.set_attributes({f"a{n}": n for n in range(7)})  # the limit is 5
            for n in range(4):  # and 3 events
                full.add_event(f"e{n}", timestamp=1201 + n)
        with (
            pytest.raises(ValueError, match="boom"),
            tracer.start_as_current_span("failing", start_time=1300),
        ):
            raise ValueError("boom")
        with (
            tracer.start_as_current_span(
                "quiet failure",
                start_time=1400,
                record_exception=False,
                set_status_on_exception=False,
            ),
            pytest.raises(KeyError),
        ):
            raise KeyError("k")
        ended = tracer.start_span("ended", start_time=1500, attributes={"before": 1})
        ended.end(end_time=1600)
        ended.set_attribute("after", 1)
        ended.set_attributes({"after": 1})
        ended.set_status(StatusCode.ERROR)
        ended.add_event("late")
        ended.end(end_time=1700)
        with trace.use_span(trace.NonRecordingSpan(trace.SpanContext(9, 10, is_remote=True))):
            unsampled = tracer.start_span("under an unsampled parent")
            unsampled.set_attribute("x", 1)
            unexported.append((unsampled.get_span_context(), unsampled.is_recording(), []))
            unsampled.end()
        recorded = tracer.start_span("record only", attributes={"mine": 1})
        recorded.set_attribute("more", 2)
        unexported.append(
            (
                recorded.get_span_context(),
                recorded.is_recording(),
                list(recorded.attributes.items()),  # type: ignore[attr-defined]
            )
        )
        recorded.end()

        @tracer.start_as_current_span("decorated", start_time=1750)
        def decorated() -> None:
            trace.get_current_span().set_attribute("inside", True)

        decorated()
        with tracer.start_as_current_span("kept open", start_time=1760, end_on_exit=False) as kept:
            assert trace.get_current_span() is kept
        assert kept.is_recording()
        kept.end(end_time=1770)
    # Under a remote parent whose trace id is not random (flags 01, not 03).
    tracer.start_span(
        "remote child",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        start_time=1800,
    ).end(end_time=1900)
    root.end(end_time=2000)
    return unexported


def raised(key: str, value: Any) -> Any:
    """A stack trace from where it was raised: the SDK's also shows the frames of its two
    generator context managers (``start_as_current_span``, ``use_span``)."""
    return value.splitlines()[-3:] if key == "exception.stacktrace" else value


def fields(span: ReadableSpan) -> dict[str, Any]:
    def when(ns: int | None) -> int | str | None:
        return "now" if ns is not None and ns >= NOW else ns

    return {
        "name": span.name,
        "context": span.context,
        "parent": span.parent,
        "kind": span.kind,
        "attributes": list((span.attributes or {}).items()),
        "dropped attributes": span.dropped_attributes,
        "events": [
            (
                e.name,
                when(e.timestamp),
                [(k, raised(k, v)) for k, v in (e.attributes or {}).items()],
            )
            for e in span.events
        ],
        "dropped events": span.dropped_events,
        "links": [(link.context, list((link.attributes or {}).items())) for link in span.links],
        "dropped links": span.dropped_links,
        "status": (span.status.status_code, span.status.description),
        "times": (when(span.start_time), when(span.end_time)),
        "resource": span.resource,
        "scope": span.instrumentation_scope,
    }


def run(
    kind: type[TracerProvider], caplog: pytest.LogCaptureFixture
) -> tuple[list[dict[str, Any]], list[Unexported], list[tuple[str, int, str]]]:
    exporter = InMemorySpanExporter()
    provider = kind(
        sampler=RecordOnly(),
        id_generator=CountingIds(),
        span_limits=SpanLimits(
            max_span_attributes=5, max_span_attribute_length=8, max_events=3, max_links=2
        ),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        unexported = scenario(provider.get_tracer("drama_streaming.test", "1.0", "https://s"))
    provider.shutdown()
    spans = exporter.get_finished_spans()
    assert {type(span).__name__ for span in spans} == {
        "LeanSpan" if kind is LeanTracerProvider else "ReadableSpan"  # the SDK's copy
    }
    logged = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    return [fields(span) for span in spans], unexported, logged


def test_lean_spans_are_the_sdk_spans(caplog: pytest.LogCaptureFixture) -> None:
    sdk_spans, sdk_unexported, sdk_warnings = run(TracerProvider, caplog)
    lean_spans, lean_unexported, lean_warnings = run(LeanTracerProvider, caplog)
    assert [s["name"] for s in sdk_spans] == [
        "child renamed",
        "full",
        "failing",
        "quiet failure",
        "ended",
        "decorated",
        "kept open",
        "remote child",
        "root",
    ]
    for sdk, lean in zip(sdk_spans, lean_spans, strict=True):
        assert lean == sdk, sdk["name"]
    # The scenario went where it meant to: limits, cleaning and ended spans.
    child, full, failing, quiet, ended, decorated, kept, remote_child, root = sdk_spans
    assert kept["times"] == (1760, 1770)
    assert root["attributes"] == [
        ("ok", True),
        ("f", 1.5),
        ("server.port", 8081),
        ("fifth", 5),
        ("sixth", 6),
    ]
    assert root["dropped attributes"] == 1
    assert child["attributes"] == [  # 7 keys for 5 places: the 2 oldest go
        ("nothing", None),
        ("plain", "again"),
        ("after", 1),
        ("mapping", {"k": "v"}),
        ("last", 2.5),
    ]
    assert child["dropped attributes"] == 3  # and the empty key
    assert (full["dropped attributes"], full["dropped events"]) == (2, 1)
    assert failing["status"] == (StatusCode.ERROR, "ValueError: boom")
    assert [e[0] for e in failing["events"]] == ["exception"]
    assert failing["events"][0][2][2][1][1:] == ['    raise ValueError("boom")', "ValueError: boom"]
    assert (decorated["parent"], decorated["attributes"]) == (root["context"], [("inside", True)])
    assert (quiet["status"], quiet["events"]) == ((StatusCode.UNSET, None), [])
    assert ended["attributes"] == [("before", 1)]
    assert ended["times"] == (1500, 1600)
    assert root["context"].trace_flags == 0x03  # sampled, random trace id
    assert remote_child["context"].trace_flags == 0x01  # sampled, the remote's id not random
    assert lean_unexported == sdk_unexported
    unsampled, record_only = sdk_unexported
    assert unsampled[:2] == (trace.SpanContext(9, 7, False, trace.TraceFlags(0)), False)
    assert record_only[1:] == (True, [("sampler", "said so"), ("mine", 1), ("more", 2)])
    assert record_only[0].trace_state == TraceState([("k", "v")])
    assert lean_warnings == sdk_warnings
    assert ("opentelemetry.sdk.trace", logging.WARNING, "Setting attribute on ended span.") in (
        sdk_warnings
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"s": "short", "i": 1, "b": False}, [("s", "short"), ("i", 1), ("b", False)]),
        ({"s": "0123456789"}, [("s", "01234567")]),  # cut to the length limit
        ({"t": ["a", 1]}, [("t", ("a", 1))]),  # a list: a tuple
        ({"k": b"bytes"}, [("k", b"bytes")]),
    ],
)
def test_attributes_past_the_plain_path_are_the_sdks(
    values: dict[str, Any], expected: list[tuple[str, Any]]
) -> None:
    spans: list[list[tuple[str, Any]]] = []
    for kind in (TracerProvider, LeanTracerProvider):
        provider = kind(span_limits=SpanLimits(max_span_attribute_length=8), shutdown_on_exit=False)
        span = provider.get_tracer("t").start_span("s", attributes=values)
        span.end()
        spans.append(list(span.attributes.items()))  # type: ignore[attr-defined]
    assert spans[1] == spans[0] == expected


def installed_span(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> trace.Span:
    """A span of the provider ``configure_tracing`` installs under ``environ``."""
    installed: list[trace.TracerProvider] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    provider = configure_tracing("lean", {"OTEL_TRACES_EXPORTER": "none"} | environ)
    assert provider is not None
    assert installed == [provider]
    span = trace.get_tracer(__name__, tracer_provider=provider).start_span("s")
    span.end()
    provider.shutdown()
    return span


def test_configure_tracing_installs_the_sdks_spans_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    span = installed_span(monkeypatch, {})
    assert type(span).__module__ == "opentelemetry.sdk.trace"
    assert not isinstance(span, LeanSpan)
    named = installed_span(monkeypatch, {"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"})
    assert not isinstance(named, LeanSpan)


def test_lean_spans_are_opt_in_by_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """And, against the SDK installed (CI: the newest too), the start-up check finds all it
    needs: were it not to, the lean spans would silently be the SDK's."""
    assert lean_spans_unsupported() is None
    with caplog.at_level(logging.WARNING):
        span = installed_span(monkeypatch, {"OTEL_PYTHON_TRACER_PROVIDER": "lean_tracer_provider"})
    assert isinstance(span, LeanSpan)
    assert caplog.records == []


def test_lean_spans_fall_back_to_the_sdks_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDK without what the lean tracer reads (here: the processors' ``_on_ending``, gone)."""
    monkeypatch.delattr(SpanProcessor, "_on_ending")
    assert lean_spans_unsupported() == "SpanProcessor._on_ending"
    with caplog.at_level(logging.WARNING):
        span = installed_span(monkeypatch, {"OTEL_PYTHON_TRACER_PROVIDER": "lean_tracer_provider"})
    assert not isinstance(span, LeanSpan)
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "OTEL_PYTHON_TRACER_PROVIDER=lean_tracer_provider: the installed opentelemetry-sdk "
    )
    assert record.getMessage().endswith(
        "lacks what the lean spans read (SpanProcessor._on_ending); using the SDK's spans"
    )


@pytest.mark.parametrize("name", ["nonesuch", "otlp_json"])
def test_configure_tracing_refuses_what_is_not_a_tracer_provider(name: str) -> None:
    with pytest.raises(ConfigError, match="OTEL_PYTHON_TRACER_PROVIDER"):
        configure_tracing(
            "x", {"OTEL_TRACES_EXPORTER": "none", "OTEL_PYTHON_TRACER_PROVIDER": name}
        )
