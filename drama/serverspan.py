"""drama-service's SERVER spans: the stock middleware, asked only for the requests that are traced.

``opentelemetry-instrumentation-aiohttp-server`` makes the SERVER span of every request. It
builds the span's name and about ten attributes, extracts the context, starts the span and
sets its status for every request, and only then does the sampler's answer show: at 10%
sampling, nine requests in ten paid for a span that records nothing (its cost, measured:
docs/performance.md, "Measured choices").

:func:`sampled_server_spans` puts a gate in front of it. The gate extracts the incoming context
with the configured propagators and asks the tracer provider's sampler first, with the trace id
the span would get. A request whose trace records goes to the stock middleware, which makes its
span as before (the trace id already decided on is handed to the SDK by
:class:`broker.PresetTraceIds`, so that the sampler, asked again, says the same). Any other
request runs under a span that records nothing, made as the SDK makes one: the caller's trace id
or a new one, a new span id, flags unsampled (the random-trace-id flag and the trace state kept
as the SDK keeps them); the RPCs downstream carry it on, and are not sampled either.

The gate decides ahead only for the SDK's own samplers (``OTEL_TRACES_SAMPLER``'s choices, and
``ParentBased`` made only of them), which look at the trace id and the parent, nothing of the
request. Any other sampler, or a provider without :class:`broker.PresetTraceIds`, leaves the
stock middleware alone. The stock middleware's OpenTelemetry metrics (``http.server.*``) are not
recorded for the requests it does not see; no ``MeterProvider`` is installed here, and the
Prometheus metrics of ``drama/timing.py`` count every request.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation import aiohttp_server
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.util.http import get_excluded_urls

from broker import PresetTraceIds

_UNSAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSAMPLED_RANDOM = trace.TraceFlags(trace.TraceFlags.DEFAULT | trace.TraceFlags.RANDOM_TRACE_ID)
# ParentBased's delegates, one for each kind of parent (private in the SDK, hence looked up).
_PARENT_BASED_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def sampled_server_spans(app: web.Application, provider: TracerProvider) -> None:
    """Gate the stock SERVER-span middleware of ``app`` (its first, put there by
    ``AioHttpServerInstrumentor().instrument()``) so that only traced requests reach it."""
    stock = app.middlewares[0] if app.middlewares else None
    if stock is None or getattr(stock, "__module__", None) != aiohttp_server.__name__:
        raise RuntimeError("the first middleware is not the OpenTelemetry server middleware")
    app.middlewares[0] = gate(stock, provider)


def decides_on_ids(sampler: sampling.Sampler) -> bool:
    """Whether ``sampler`` is one of the SDK's, which need nothing of the request itself."""
    if type(sampler).__module__ != sampling.__name__:
        return False
    if isinstance(sampler, sampling.ParentBased):
        delegates = [getattr(sampler, name, None) for name in _PARENT_BASED_DELEGATES]
        return all(d is not None and decides_on_ids(d) for d in delegates)
    return True


def gate(stock: Middleware, provider: TracerProvider) -> Middleware:
    """``stock`` for the requests whose trace records; the others skip it (see the module)."""
    sampler = provider.sampler
    ids = provider.id_generator
    if not isinstance(ids, PresetTraceIds) or not decides_on_ids(sampler):
        return stock
    excluded = get_excluded_urls("AIOHTTP_SERVER")  # what the stock middleware passes through
    random_ids = ids.is_trace_id_random()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_http_instrumentation_enabled() or excluded.url_disabled(request.path):
            return await stock(request, handler)
        # The stock middleware extracts the same way, so both see the same parent.
        incoming = extract(request, getter=aiohttp_server.getter)
        parent = trace.get_current_span(incoming).get_span_context()
        root = not parent.is_valid
        trace_id = ids.generate_trace_id() if root else parent.trace_id
        # The SDK's samplers look at the context and the trace id only, not at the name.
        decision = sampler.should_sample(incoming, trace_id, request.method, trace.SpanKind.SERVER)
        if decision.decision is not sampling.Decision.DROP:
            if not root:
                return await stock(request, handler)

            async def handle(request: web.Request) -> web.StreamResponse:
                ids.discard()  # the SERVER span took it; nothing under it may take it again
                return await handler(request)

            with ids.preset(trace_id):
                return await stock(request, handle)
        random = random_ids if root else parent.trace_flags.random_trace_id
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id,
                ids.generate_span_id(),
                is_remote=False,
                trace_flags=_UNSAMPLED_RANDOM if random else _UNSAMPLED,
                trace_state=decision.trace_state,
            )
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await handler(request)
        finally:
            otel_context.detach(token)

    return middleware
