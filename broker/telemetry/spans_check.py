"""The start-up check of the lean spans: does the installed SDK have what they read?

:class:`~broker.telemetry.spans.LeanTracerProvider` subclasses the SDK's ``Tracer`` and ``Span``
and reads their protected fields as SDK 1.45 has them; the SDK is not pinned below the next
minor version any more (docs/adr/otel-lean-spans.md). :func:`lean_spans_unsupported` says what a
newer SDK no longer has, so that ``configure_tracing`` installs the SDK's own provider instead,
with one warning, rather than failing at the first request.
"""

from __future__ import annotations

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from broker.telemetry.spans import LeanSpan, LeanTracerProvider

# What LeanTracer and LeanSpan read or call in the SDK beyond its public API (SDK 1.45).
_TRACER_READS = (
    "_is_enabled",
    "_tracer_metrics",
    "_span_limits",
    "_instrumentation_scope",
    "sampler",
    "id_generator",
    "resource",
    "span_processor",
    "instrumentation_info",
)
_CLASS_READS = (
    (sdk_trace.SpanProcessor, "_on_ending"),
    (sdk_trace.Span, "_new_links"),
    (BoundedAttributes, "_set_items"),
)


def lean_spans_unsupported() -> str | None:
    """What the installed SDK lacks of what the lean tracer reads; None when it has it all.

    Looks for the names, then makes a span of every kind of content (attributes plain and not,
    an event, a link, a status, an exception) through a :class:`LeanTracerProvider` and checks
    the processor gets what the SDK's would give it. A newer SDK that renamed a field then
    degrades to its own spans at start rather than failing at the first request.
    """
    try:
        for kind, name in _CLASS_READS:
            if not hasattr(kind, name):
                return f"{kind.__name__}.{name}"
        if not hasattr(BoundedAttributes(immutable=False), "_immutable"):
            return "BoundedAttributes._immutable"
        # Everything given, none of it from the environment: the check is of the SDK alone.
        limits = sdk_trace.SpanLimits(
            max_span_attributes=8,
            max_events=8,
            max_links=8,
            max_event_attributes=8,
            max_link_attributes=8,
            max_span_attribute_length=1 << 20,
            max_attribute_length=1 << 20,
        )
        provider = LeanTracerProvider(
            sampler=ALWAYS_ON,
            resource=Resource({}),
            shutdown_on_exit=False,
            span_limits=limits,
        )
        tracer = provider.get_tracer("broker.telemetry.spans.check")
        missing = [name for name in _TRACER_READS if not hasattr(tracer, name)]
        if missing:
            return "Tracer." + ", Tracer.".join(missing)
        ended: list[sdk_trace.ReadableSpan] = []
        provider.add_span_processor(_Collect(ended))
        with tracer.start_as_current_span("check", attributes={"s": "v", "i": 1}) as parent:
            parent.set_attributes({"t": ("a", "b"), "f": 1.5})
            parent.add_event("event", {"e": True})
            parent.set_status(trace_api.Status(trace_api.StatusCode.OK))
            child = tracer.start_span("child", links=[trace_api.Link(parent.get_span_context())])
            child.record_exception(ValueError("check"))
            child.end()
        names = [(s.name, dict(s.attributes or {}), len(s.events), len(s.links)) for s in ended]
        expected = [
            ("child", {}, 1, 1),
            ("check", {"s": "v", "i": 1, "t": ("a", "b"), "f": 1.5}, 1, 0),
        ]
        if names != expected or not isinstance(ended[0], LeanSpan):
            return f"spans made as {names}, not {expected}"
    except Exception as error:  # noqa: BLE001 - whatever a changed SDK raises: the reason to fall back
        return f"{type(error).__name__}: {error}"
    return None


class _Collect(sdk_trace.SpanProcessor):
    """The ended spans, into a list."""

    def __init__(self, ended: list[sdk_trace.ReadableSpan]) -> None:
        self._ended = ended

    def on_end(self, span: sdk_trace.ReadableSpan) -> None:
        self._ended.append(span)
