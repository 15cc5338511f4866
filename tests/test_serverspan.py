"""drama-service's gate in front of the stock SERVER-span middleware (drama/serverspan.py), over
real HTTP: sampled requests get the stock span, once decided; the others get none, and their
trace goes on unsampled."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation import aiohttp_server
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBasedTraceIdRatio, Sampler
from pytest_aiohttp import AiohttpClient

from broker import PresetTraceIds
from drama.serverspan import sampled_server_spans

PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def instrumented(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stock module's settings, as ``serve`` leaves them; web.Application left unpatched."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS", "/healthz$")
    instrumentor = AioHttpServerInstrumentor()
    with warnings.catch_warnings():  # it subclasses web.Application, which aiohttp discourages
        warnings.simplefilter("ignore", DeprecationWarning)
        instrumentor.instrument()
    instrumentor.uninstrument()


async def current_span(request: web.Request) -> web.Response:
    context = trace.get_current_span().get_span_context()
    return web.json_response(
        {
            "trace_id": trace.format_trace_id(context.trace_id),
            "span_id": trace.format_span_id(context.span_id),
            "sampled": context.trace_flags.sampled,
        }
    )


def app_for(provider: TracerProvider, *, gated: bool = True) -> web.Application:
    stock = aiohttp_server.create_aiohttp_middleware(tracer_provider=provider)
    app = web.Application(middlewares=[stock])
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

    async def get(self, path: str, traceparent: str | None = None) -> dict[str, Any]:
        headers = {"traceparent": traceparent} if traceparent else {}
        async with self.client.get(path, headers=headers) as response:
            assert response.status == 200
            return await response.json()  # type: ignore[no-any-return]

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def provider_with(sampler: Sampler, ids: PresetTraceIds | None = None) -> TracerProvider:
    return TracerProvider(sampler=sampler, id_generator=ids or PresetTraceIds())


@pytest.fixture
async def traced(
    instrumented: None, aiohttp_client: AiohttpClient, request: pytest.FixtureRequest
) -> AsyncIterator[Traced]:
    provider: TracerProvider = request.param
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await aiohttp_client(app_for(provider))
    yield Traced(client, exporter)
    provider.shutdown()


@pytest.mark.parametrize("traced", [provider_with(ParentBasedTraceIdRatio(0.5))], indirect=True)
async def test_ratio_is_decided_once(traced: Traced) -> None:
    """At 50%, half the requests are traced, not a quarter: the SDK, asked again for the
    traced ones, is handed the trace id that was decided on, and decides the same."""
    answers = [await traced.get("/dramas/1") for _ in range(400)]
    sampled = {a["trace_id"] for a in answers if a["sampled"]}
    # Binomial(400, 0.5): 150-250 is five standard deviations each way; deciding twice would
    # give 100 on average.
    assert 150 <= len(sampled) <= 250, len(sampled)
    spans = traced.spans()
    assert {trace.format_trace_id(s.context.trace_id) for s in spans} == sampled
    assert all(s.kind is trace.SpanKind.SERVER and s.name == "GET /dramas/{id}" for s in spans)
    assert all(s.attributes and s.attributes["http.route"] == "/dramas/{id}" for s in spans)
    # The SERVER span is the one the handler ran under.
    ids = {a["trace_id"]: a["span_id"] for a in answers}
    assert all(
        ids[trace.format_trace_id(s.context.trace_id)] == trace.format_span_id(s.context.span_id)
        for s in spans
    )
    # Every trace id is new, traced or not.
    assert len(ids) == len(answers)


@pytest.mark.parametrize("traced", [provider_with(ParentBasedTraceIdRatio(0.5))], indirect=True)
async def test_incoming_decision_is_followed(traced: Traced) -> None:
    """An unsampled traceparent goes on unsampled, with no span and a span id of its own; a
    sampled one gets the stock SERVER span under the caller's."""
    quiet, loud = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
    answer = await traced.get("/dramas/1", f"00-{quiet}-{PARENT_SPAN}-00")
    assert answer["trace_id"] == quiet
    assert answer["sampled"] is False
    assert answer["span_id"] != PARENT_SPAN
    answer = await traced.get("/dramas/1", f"00-{loud}-{PARENT_SPAN}-01")
    assert answer["trace_id"] == loud
    assert answer["sampled"] is True
    (span,) = traced.spans()
    assert trace.format_trace_id(span.context.trace_id) == loud
    assert span.parent is not None
    assert trace.format_span_id(span.parent.span_id) == PARENT_SPAN


@pytest.mark.parametrize("traced", [provider_with(ALWAYS_ON)], indirect=True)
async def test_excluded_paths_stay_untraced(traced: Traced) -> None:
    answer = await traced.get("/healthz")
    assert answer["sampled"] is False
    assert answer["trace_id"] == trace.format_trace_id(trace.INVALID_TRACE_ID)
    await traced.get("/dramas/1")
    assert [s.name for s in traced.spans()] == ["GET /dramas/{id}"]


def test_gate_steps_aside_when_it_cannot_decide_ahead(instrumented: None) -> None:
    """Without PresetTraceIds, or with a sampler that is not the SDK's own (it might look at
    the request's attributes), the stock middleware is left to decide alone."""

    class Custom(Sampler):
        def should_sample(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            return ALWAYS_ON.should_sample(*args, **kwargs)  # type: ignore[arg-type]

        def get_description(self) -> str:
            return "custom"

    for provider in (TracerProvider(), provider_with(Custom())):
        app = app_for(provider, gated=False)
        stock = app.middlewares[0]
        sampled_server_spans(app, provider)
        assert app.middlewares[0] is stock
    with pytest.raises(RuntimeError, match="not the OpenTelemetry server middleware"):
        sampled_server_spans(web.Application(middlewares=[]), provider_with(ALWAYS_ON))
