"""drama-service's SERVER spans: the stock middleware, asked only for the requests that are traced.

``opentelemetry-instrumentation-aiohttp-server`` makes the SERVER span of every request. It
builds the span's name and about ten attributes, extracts the context, starts the span and
sets its status for every request, and only then does the sampler's answer show: at 10%
sampling, nine requests in ten paid ~30-50 us of CPU for a span that records nothing.

:func:`sampled_server_spans` puts a gate in front of it. The gate extracts the incoming context
and asks the tracer provider's sampler first, with the trace id the span would get. A request
whose trace records goes to the stock middleware, which makes its span as before (the trace id
already decided on is handed to the SDK by :class:`broker.PresetTraceIds`, so that the sampler,
asked again, says the same). Any other request runs under a span that records nothing, as the
SDK would have made it: the caller's trace id or a new one, a new span id, flags unsampled; the
RPCs downstream carry it on, and are not sampled either.

The gate decides ahead only for the SDK's own samplers (``OTEL_TRACES_SAMPLER``'s choices),
which look at the trace id, the parent and nothing of the request. Any other sampler, or a
provider without :class:`broker.PresetTraceIds`, leaves the stock middleware alone.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation import aiohttp_server
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.util.http import get_excluded_urls

from broker import PresetTraceIds

_NOTHING = Context()
_UNSAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)
_UNSAMPLED_RANDOM = trace.TraceFlags(trace.TraceFlags.DEFAULT | trace.TraceFlags.RANDOM_TRACE_ID)


def sampled_server_spans(app: web.Application, provider: TracerProvider) -> None:
    """Gate the stock SERVER-span middleware of ``app`` (its first, put there by
    ``AioHttpServerInstrumentor().instrument()``) so that only traced requests reach it."""
    stock = app.middlewares[0] if app.middlewares else None
    if stock is None or getattr(stock, "__module__", None) != aiohttp_server.__name__:
        raise RuntimeError("the first middleware is not the OpenTelemetry server middleware")
    app.middlewares[0] = gate(stock, provider)


def gate(stock: Middleware, provider: TracerProvider) -> Middleware:
    """``stock`` for the requests whose trace records; the others skip it (see the module)."""
    sampler = provider.sampler
    ids = provider.id_generator
    if not isinstance(ids, PresetTraceIds) or type(sampler).__module__ != sampling.__name__:
        return stock
    excluded = get_excluded_urls("AIOHTTP_SERVER")  # what the stock middleware passes through
    random_ids = ids.is_trace_id_random()
    fields = tuple(propagate.get_global_textmap().fields)  # traceparent, baggage, b3...

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_http_instrumentation_enabled() or excluded.url_disabled(request.path):
            return await stock(request, handler)
        if any(field in request.headers for field in fields):
            incoming = extract(request, getter=aiohttp_server.getter)
            parent = trace.get_current_span(incoming).get_span_context()
        else:  # what extracting would give, for less
            incoming, parent = _NOTHING, trace.INVALID_SPAN_CONTEXT
        root = not parent.is_valid
        trace_id = ids.generate_trace_id() if root else parent.trace_id
        # The SDK's samplers look at the context and the trace id only, not at the name.
        decision = sampler.should_sample(incoming, trace_id, request.method, trace.SpanKind.SERVER)
        if decision.decision is not sampling.Decision.DROP:
            if not root:
                return await stock(request, handler)
            with ids.preset(trace_id):
                return await stock(request, handler)
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
