"""The OpenTelemetry SDK's tracer, with a span that costs less to make.

A sampled ``GET /dramas/{id}`` makes 12 spans. The SDK's ``_Span`` costs about twice a lean one
(``python -m loadtest.bench_spans``), and at 10% sampling that tenth
alone was more than the 5% of throughput tracing may cost (docs/performance.md). cProfile puts
the time in what a span does for every attribute and call whatever its content:
``BoundedAttributes`` cleans each value under a lock, every call takes the span's lock, and
``end()`` copies the span into a new ``ReadableSpan`` for the processors.

:class:`LeanTracerProvider` is the SDK's ``TracerProvider`` (sampler, id generator, resource,
span limits, processors, exporters, tracer configurator: all its own) whose tracers make
:class:`LeanSpan` instead. A ``LeanSpan`` is an SDK ``Span`` with the same API and the same
output, made cheaply where the content is plain:

- attributes live in a plain ``dict`` while every key is a new non-empty ``str`` and every
  value a ``str`` (within the length limit), ``bool``, ``int`` or ``float``, within the count
  limit. The first attribute that is anything else (a sequence, a mapping, ``None``, a key set
  twice, a limit reached) turns the dict into the SDK's own ``BoundedAttributes``, which
  cleans, truncates, drops and counts as it always does;
- no lock: a span is changed by one thread at a time, in this project the event loop's task
  that made it (the SDK's lock lets threads share a span; hand a span to another thread only
  once this one is done with it). After ``end()`` nothing changes it, and the processors get
  a copy of a plain dict;
- events and links get the SDK's bounded lists only when there is one;
- ``end()`` hands the span itself (a ``ReadableSpan``, frozen by its end time) to the
  processors rather than a copy.

It is opt-in: ``OTEL_PYTHON_TRACER_PROVIDER=lean_tracer_provider`` (the entry point in
pyproject.toml; :func:`broker.telemetry.configure_tracing` builds the provider it names, the
SDK's by default). The SDK says ``ReadableSpan``s are its to make; this subclasses its ``Span``
and ``Tracer`` and reads their protected fields, so ``tests/test_spans.py`` checks that both make
the same spans, field by field, in CI against the newest SDK too
(.github/workflows/otel-newest.yml), and :mod:`broker.telemetry.spans_check` checks at start
that the installed SDK has what this reads: when it does not, the services run on the SDK's
spans (docs/adr/otel-lean-spans.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.util import types

# The SDK's logger: its warnings ("Setting attribute on ended span.") come from where they did.
log = logging.getLogger(sdk_trace.__name__)

_PLAIN = frozenset((bool, int, float))
_UNSET = trace_api.Status(trace_api.StatusCode.UNSET)
# The span's lock, for the SDK methods that take it (set_status, add_event...): reusable.
_NO_LOCK = nullcontext()


class LeanTracerProvider(sdk_trace.TracerProvider):
    """The SDK's provider; its tracers make :class:`LeanSpan` (one thread at a time a span)."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        tracer = super().get_tracer(*args, **kwargs)
        if type(tracer) is sdk_trace.Tracer:
            # The SDK builds and caches its Tracer; this one only overrides start_span, so the
            # cached object changes class in place rather than being built here a second way.
            tracer.__class__ = LeanTracer
        return tracer


class LeanTracer(sdk_trace.Tracer):
    """``Tracer.start_span`` as the SDK writes it (SDK 1.45), making a :class:`LeanSpan`."""

    def start_span(  # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        links = links or ()
        parent: Any = trace_api.get_current_span(context).get_span_context()  # a foreign span's
        if parent is not None and not isinstance(parent, trace_api.SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        if not self._is_enabled():
            return trace_api.NonRecordingSpan(context=parent)  # type: ignore[arg-type] # as the SDK
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self.id_generator.generate_trace_id()
            random_trace_id = self.id_generator.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
        decision = result.decision
        flags = trace_api.TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else 0
        if random_trace_id:
            flags |= trace_api.TraceFlags.RANDOM_TRACE_ID
        span_context = trace_api.SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=trace_api.TraceFlags(flags),
            trace_state=result.trace_state,
        )
        end_metrics = self._tracer_metrics.start_span(parent, decision)
        if decision is Decision.DROP:
            return trace_api.NonRecordingSpan(context=span_context)
        span = LeanSpan(
            name,
            span_context,
            parent,
            self.resource,
            result.attributes,
            links,
            kind,
            self.sampler,
            self.span_processor,
            self.instrumentation_info,
            record_exception,
            set_status_on_exception,
            self._span_limits,
            self._instrumentation_scope,
            end_metrics,
        )
        span.start(start_time=start_time, parent_context=context)
        return span

    def start_as_current_span(  # type: ignore[override] # noqa: PLR0917 - the API's signature
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: trace_api.SpanKind = trace_api.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _CurrentSpan:
        start: _StartArgs = (
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        return _CurrentSpan(self, start, record_exception, set_status_on_exception, end_on_exit)


# Tracer.start_span's arguments, positionally.
_StartArgs = tuple[
    str,
    context_api.Context | None,
    trace_api.SpanKind,
    types.Attributes,
    Sequence[trace_api.Link] | None,
    int | None,
    bool,
    bool,
]


class _CurrentSpan:
    """``Tracer.start_as_current_span`` with ``trace.use_span`` inside it, as one class: the
    SDK's two generator context managers cost several times more. Used as a decorator, it is the
    SDK's own (which starts a :class:`LeanSpan` all the same)."""

    __slots__ = (
        "_end_on_exit",
        "_record_exception",
        "_set_status",
        "_span",
        "_start",
        "_token",
        "_tracer",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        start: _StartArgs,
        record_exception: bool,
        set_status_on_exception: bool,
        end_on_exit: bool,
    ) -> None:
        self._tracer = tracer
        self._start = start
        self._record_exception = record_exception
        self._set_status = set_status_on_exception
        self._end_on_exit = end_on_exit

    def __enter__(self) -> trace_api.Span:
        span = self._span = self._tracer.start_span(*self._start)
        self._token = context_api.attach(trace_api.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            context_api.detach(self._token)
            # As use_span: an Exception, not a BaseException (a cancellation, GeneratorExit).
            if isinstance(exc, Exception) and span.is_recording():
                if self._record_exception:
                    span.record_exception(exc)
                if self._set_status:
                    span.set_status(
                        trace_api.Status(trace_api.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                    )
        finally:
            if self._end_on_exit:
                span.end()

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        sdk = sdk_trace.Tracer.start_as_current_span
        return sdk(self._tracer, *self._start, end_on_exit=self._end_on_exit)(function)


class LeanSpan(sdk_trace.Span):
    """An SDK span whose plain attributes, lock and end cost what they need to (module doc)."""

    def __init__(  # noqa: PLR0917 - what the tracer hands over, positionally: cheaper
        self,
        name: str,
        context: trace_api.SpanContext,
        parent: trace_api.SpanContext | None,
        resource: Any,
        attributes: types.Attributes,
        links: Sequence[trace_api.Link],
        kind: trace_api.SpanKind,
        sampler: Any,
        span_processor: sdk_trace.SpanProcessor,
        instrumentation_info: Any,
        record_exception: bool,
        set_status_on_exception: bool,
        limits: sdk_trace.SpanLimits,
        instrumentation_scope: Any,
        record_end_metrics: Callable[[], None],
    ) -> None:
        # ReadableSpan's fields, set here rather than through its __init__ (one call less).
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = instrumentation_info
        self._instrumentation_scope = instrumentation_scope
        self._parent = parent
        self._start_time: int | None = None
        self._end_time: int | None = None
        self._resource = resource
        self._status = _UNSET  # replaced, never changed, by set_status
        # Span's.
        self._sampler = sampler
        self._trace_config = None
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._span_processor = span_processor
        self._limits = limits
        self._lock = _NO_LOCK  # type: ignore[assignment] # a span is changed by one task
        self._record_end_metrics = record_end_metrics
        self._events: Sequence[sdk_trace.Event] = ()
        self._links: Sequence[trace_api.Link] = self._new_links(links) if links else ()
        self._attributes: dict[str, Any] | BoundedAttributes = {}
        if attributes:
            self.set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            log.warning("Setting attribute on ended span.")
        elif not self._set_plain(((key, value),)):
            self._bounded()[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            log.warning("Setting attribute on ended span.")
        elif not self._set_plain(attributes.items()):
            # The rest as the SDK sets them; those already set are set again, as the SDK would.
            self._bounded()._set_items(attributes)

    def _set_plain(self, items: Iterable[tuple[str, Any]]) -> bool:
        """Set ``items`` in the plain dict while the SDK would keep each as it is, at the end;
        False at the first one it would not (or when the attributes are the SDK's already)."""
        mine = self._attributes
        if type(mine) is not dict:
            return False
        limits = self._limits
        room = limits.max_span_attributes
        room = 1 << 62 if room is None else room - len(mine)
        cap = limits.max_span_attribute_length
        for key, value in items:
            kind = type(value)
            if (
                room <= 0
                or type(key) is not str
                or not key
                or key in mine
                or not (kind in _PLAIN or (kind is str and (cap is None or len(value) <= cap)))
            ):
                return False
            mine[key] = value
            room -= 1
        return True

    def _bounded(self) -> BoundedAttributes:
        """The attributes as the SDK keeps them, from now on."""
        attributes = self._attributes
        if not isinstance(attributes, BoundedAttributes):
            attributes = self._attributes = BoundedAttributes(
                self._limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=self._limits.max_span_attribute_length,
            )
        return attributes

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if type(self._events) is tuple and self._end_time is None:
            self._events = BoundedList(self._limits.max_events)
        super().add_event(name, attributes, timestamp)

    def add_link(
        self,
        context: trace_api.SpanContext,
        attributes: types.Attributes = None,
    ) -> None:
        if type(self._links) is tuple and self._end_time is None:
            self._links = self._new_links(())
        super().add_link(context, attributes)

    def start(
        self,
        start_time: int | None = None,
        parent_context: context_api.Context | None = None,
    ) -> None:
        if self._start_time is not None:
            log.warning("Calling start() on a started span.")
            return
        self._start_time = start_time if start_time is not None else time_ns()
        self._span_processor.on_start(self, parent_context=parent_context)

    def end(self, end_time: int | None = None) -> None:
        if self._start_time is None:
            raise RuntimeError("Calling end() on a not started span.")
        if self._end_time is not None:
            log.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        attributes = self._attributes
        if isinstance(attributes, BoundedAttributes):
            attributes._immutable = True
        else:
            # The exporter's thread reads a copy: a write from another thread that got past
            # the end check just now goes into the old dict, not into one being encoded.
            self._attributes = attributes.copy()
        if self._record_end_metrics:
            self._record_end_metrics()
        processor = self._span_processor
        processor._on_ending(self)
        # Span.end hands over a ReadableSpan copy; this span is one, and nothing changes it
        # once it has an end time.
        processor.on_end(self)
