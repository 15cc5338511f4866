"""drama-service's gate in front of the stock SERVER-span middleware (drama/serverspan.py), over
real HTTP: sampled requests get the stock span, once decided; the others never reach the stock
middleware, and their trace goes on unsampled."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation import aiohttp_server
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.propagators.b3 import B3MultiFormat
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pytest_aiohttp import AiohttpClient

from broker.telemetry import PresetTraceIds
from drama.serverspan import decides_on_ids, sampled_server_spans

PARENT_SPAN = "00f067aa0ba902b7"
QUIET = "0af7651916cd43dd8448eb211c80319c"
LOUD = "4bf92f3577b34da6a3ce929d0e0e4736"
PROVIDER = web.AppKey("provider", TracerProvider)


@pytest.fixture
def stock_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stock module's settings, as ``serve`` leaves them (web.Application left unpatched),
    and the paths of the requests that reached the stock middleware's span-making part."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "/healthz$")
    instrumentor = AioHttpServerInstrumentor()
    with warnings.catch_warnings():  # it subclasses web.Application, which aiohttp discourages
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument()
    instrumentor.uninstrument()
    calls: list[str] = []
    collect = aiohttp_server.collect_request_attributes

    def counted(request: web.Request, *args: Any) -> dict[str, Any]:
        calls.append(request.path)
        return collect(request, *args)

    monkeypatch.setattr(aiohttp_server, "collect_request_attributes", counted)
    return calls


@pytest.fixture
def with_b3() -> Iterator[None]:
    """The propagators of ``OTEL_PROPAGATORS=tracecontext,baggage,b3multi`` (Istio on Zipkin)."""
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator(
            [TraceContextTextMapPropagator(), W3CBaggagePropagator(), B3MultiFormat()]
        )
    )
    yield
    propagate.set_global_textmap(before)


async def current_span(request: web.Request) -> web.Response:
    """What the handler runs under, and a root span it starts (say, for work of its own)."""
    context = trace.get_current_span().get_span_context()
    tracer = request.app[PROVIDER].get_tracer(__name__)
    job = tracer.start_span("job", context=trace.set_span_in_context(trace.INVALID_SPAN))
    job.end()
    return web.json_response(
        {
            "trace_id": trace.format_trace_id(context.trace_id),
            "span_id": trace.format_span_id(context.span_id),
            "sampled": context.trace_flags.sampled,
            "flags": int(context.trace_flags),
            "trace_state": context.trace_state.to_header(),
            "job_trace_id": trace.format_trace_id(job.get_span_context().trace_id),
        }
    )


def app_for(provider: TracerProvider, *, gated: bool = True) -> web.Application:
    stock = aiohttp_server.create_aiohttp_middleware(tracer_provider=provider)
    app = web.Application(middlewares=[stock])
    app[PROVIDER] = provider
    app.router.add_get("/dramas/{id}", current_span)
    app.router.add_get("/healthz", current_span)
    if gated:
        sampled_server_spans(app, provider)
    return app


class Traced:
    def __init__(
        self, client: TestClient[web.Request, web.Application], exporter: InMemorySpanExporter
    ) -> None:
        self.client = client
        self.exporter = exporter

    async def get(self, path: str, **headers: str) -> dict[str, Any]:
        async with self.client.get(path, headers=headers) as response:
            assert response.status == 200
            return await response.json()  # type: ignore[no-any-return]

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name != "job"]


def provider_with(sampler: Sampler) -> TracerProvider:
    return TracerProvider(sampler=sampler, id_generator=PresetTraceIds())


@pytest.fixture
async def traced(
    stock_calls: list[str], aiohttp_client: AiohttpClient, request: pytest.FixtureRequest
) -> AsyncIterator[Traced]:
    provider = provider_with(request.param)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await aiohttp_client(app_for(provider))
    yield Traced(client, exporter)
    provider.shutdown()


@pytest.mark.parametrize("traced", [ParentBasedTraceIdRatio(0.5)], indirect=True)
async def test_ratio_is_decided_once(traced: Traced, stock_calls: list[str]) -> None:
    """At 50%, half the requests are traced, not a quarter: the SDK, asked again for the
    traced ones, is handed the trace id that was decided on, and decides the same. Only
    those reach the stock middleware."""
    answers = [await traced.get("/dramas/1") for _ in range(400)]
    sampled = {a["trace_id"] for a in answers if a["sampled"]}
    # Binomial(400, 0.5): 150-250 is five standard deviations each way; deciding twice would
    # give 100 on average.
    assert 150 <= len(sampled) <= 250, len(sampled)
    assert len(stock_calls) == len(sampled)
    spans = traced.server_spans()
    assert {trace.format_trace_id(s.context.trace_id) for s in spans} == sampled
    assert all(s.kind is trace.SpanKind.SERVER and s.name == "GET /dramas/{id}" for s in spans)
    assert all(s.attributes and s.attributes["http.route"] == "/dramas/{id}" for s in spans)
    # The SERVER span is the one the handler ran under.
    ids = {a["trace_id"]: a["span_id"] for a in answers}
    for span in spans:
        assert ids[trace.format_trace_id(span.context.trace_id)] == trace.format_span_id(
            span.context.span_id
        )
    # Every trace id is new, traced or not; unsampled roots keep the random-trace-id flag, as
    # the SDK sets it; the handler's own root span has a trace id of its own.
    assert len(ids) == len(answers)
    assert {a["flags"] for a in answers if not a["sampled"]} == {0x02}
    assert all(a["job_trace_id"] != a["trace_id"] for a in answers)


@pytest.mark.parametrize("traced", [ParentBasedTraceIdRatio(0.5)], indirect=True)
async def test_incoming_decision_is_followed(traced: Traced, stock_calls: list[str]) -> None:
    """An unsampled traceparent goes on unsampled, with its trace state, a span id of its own
    and no span; a sampled one gets the stock SERVER span under the caller's."""
    answer = await traced.get(
        "/dramas/1", traceparent=f"00-{QUIET}-{PARENT_SPAN}-00", tracestate="vendor=x"
    )
    assert answer["trace_id"] == QUIET
    assert answer["sampled"] is False
    assert answer["trace_state"] == "vendor=x"
    assert answer["span_id"] != PARENT_SPAN
    assert stock_calls == []
    answer = await traced.get("/dramas/1", traceparent=f"00-{LOUD}-{PARENT_SPAN}-01")
    assert answer["trace_id"] == LOUD
    assert answer["sampled"] is True
    (span,) = traced.server_spans()
    assert trace.format_trace_id(span.context.trace_id) == LOUD
    assert span.parent is not None
    assert trace.format_span_id(span.parent.span_id) == PARENT_SPAN
    assert stock_calls == ["/dramas/1"]


@pytest.mark.parametrize("traced", [ParentBasedTraceIdRatio(0.5)], indirect=True)
async def test_b3_single_header_is_followed(
    with_b3: None, traced: Traced, stock_calls: list[str]
) -> None:
    """B3's one-header form (``b3: trace-span-sampled``), which its propagator reads but does
    not list among its fields, is followed both ways."""
    answer = await traced.get("/dramas/1", b3=f"{QUIET}-{PARENT_SPAN}-0")
    assert answer["trace_id"] == QUIET
    assert answer["sampled"] is False
    assert stock_calls == []
    answer = await traced.get("/dramas/1", b3=f"{LOUD}-{PARENT_SPAN}-1")
    assert answer["trace_id"] == LOUD
    assert answer["sampled"] is True
    (span,) = traced.server_spans()
    assert span.parent is not None
    assert trace.format_span_id(span.parent.span_id) == PARENT_SPAN


@pytest.mark.parametrize("traced", [ALWAYS_ON], indirect=True)
async def test_excluded_paths_stay_untraced(traced: Traced, stock_calls: list[str]) -> None:
    answer = await traced.get("/healthz")
    assert answer["sampled"] is False
    assert answer["trace_id"] == trace.format_trace_id(trace.INVALID_TRACE_ID)
    await traced.get("/dramas/1")
    assert [s.name for s in traced.server_spans()] == ["GET /dramas/{id}"]
    assert stock_calls == ["/dramas/1"]


class Custom(Sampler):
    """A sampler of one's own: it might look at the request's attributes."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return ALWAYS_ON.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "custom"


def test_gate_steps_aside_when_it_cannot_decide_ahead(stock_calls: list[str]) -> None:
    """Without PresetTraceIds, or with a sampler that is not the SDK's own, even inside
    ParentBased, the stock middleware is left to decide alone."""
    assert decides_on_ids(ParentBasedTraceIdRatio(0.1))
    assert not decides_on_ids(ParentBased(root=Custom()))
    for provider in (
        TracerProvider(),
        provider_with(Custom()),
        provider_with(ParentBased(root=Custom())),
    ):
        app = app_for(provider, gated=False)
        stock = app.middlewares[0]
        sampled_server_spans(app, provider)
        assert app.middlewares[0] is stock
    with pytest.raises(RuntimeError, match="not the OpenTelemetry server middleware"):
        sampled_server_spans(web.Application(middlewares=[]), provider_with(ALWAYS_ON))
