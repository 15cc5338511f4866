"""Tracing: the SDK set up from the standard ``OTEL_*`` variables, and the spans of the RPC layer.

Every service calls :func:`configure_tracing` once from ``__main__``. Nothing else reads the
environment: the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the sampler
(``OTEL_TRACES_SAMPLER``/``_ARG``), the batch processor (``OTEL_BSP_*``) and the propagators
(``OTEL_PROPAGATORS``; add ``b3multi`` behind an Istio Zipkin provider) are read by the SDK
itself; the exporter's ``OTEL_EXPORTER_OTLP_*`` (endpoint, protocol, headers, timeout,
compression, TLS files) by :func:`configure_tracing` and the exporter it picks. The tracer
provider and the exporter are chosen as the SDK's own configurator chooses them, by name among
the installed entry points (``OTEL_PYTHON_TRACER_PROVIDER``, ``OTEL_TRACES_EXPORTER``): the
project's lean spans and OTLP/JSON exporter are opt-in there.
``OTEL_SDK_DISABLED=true`` leaves the no-op API in place: no span is made, nothing is exported,
nothing is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from importlib.metadata import entry_points, version
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from opentelemetry import metrics, trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from broker.errors import ConfigError
from broker.telemetry.otlp import OtlpJsonSpanExporter
from broker.telemetry.spans import LeanTracerProvider
from broker.telemetry.spans_check import lean_spans_unsupported

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("broker._telemetry")  # its name before broker/ had packages

TRACER = "drama_streaming.broker"
# What OTEL_TRACES_EXPORTER=otlp sends when no OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL says:
# the project's OTLP/JSON exporter (docs/adr/otel-json-exporter.md); "http/protobuf" would make
# it opt-in (OTEL_TRACES_EXPORTER=otlp_json) and the official exporter the default.
DEFAULT_OTLP_PROTOCOL = "http/protobuf"


def tracing_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def configure_tracing(service_name: str, environ: Mapping[str, str]) -> TracerProvider | None:
    """Install the global tracer provider; None when tracing is switched off.

    The provider is the one ``OTEL_PYTHON_TRACER_PROVIDER`` names among the
    ``opentelemetry_tracer_provider`` entry points: the SDK's ``sdk_tracer_provider`` by default,
    or ``lean_tracer_provider`` (:class:`~broker.telemetry.LeanTracerProvider`, opt-in: cheaper
    spans, docs/adr/otel-lean-spans.md), built with this resource and id generator; the SDK
    reads the sampler. ``service_name`` is the default for ``service.name``;
    ``OTEL_SERVICE_NAME`` wins. Exporters come from ``OTEL_TRACES_EXPORTER`` (see
    :func:`_exporter`). Call ``provider.shutdown()`` on exit to flush what is batched.
    """
    if tracing_disabled(environ):
        return None
    resource = Resource.create({})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = _provider_class(environ)(resource=resource, id_generator=PresetTraceIds())
    names = (environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",")
    for name in dict.fromkeys(n.strip() for n in names):  # each once, in order
        match name:
            case "console":
                provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            case "none" | "":
                pass
            case _:
                provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
    trace.set_tracer_provider(provider)
    return provider


_T = TypeVar("_T")


def _entry_point_class(variable: str, group: str, name: str, base: type[_T]) -> type[_T]:
    """The class entry point ``name`` of ``group`` names, a ``base``; a :class:`ConfigError`
    naming ``variable`` when there is none or it is something else."""
    found = entry_points(group=group, name=name)
    if not found:
        raise ConfigError(f"{variable}: no {group} entry point named {name!r}")
    kind = next(iter(found)).load()
    if not (isinstance(kind, type) and issubclass(kind, base)):
        raise ConfigError(f"{variable}: {name!r} is not a {base.__name__}")
    return kind


def _provider_class(environ: Mapping[str, str]) -> type[TracerProvider]:
    """The SDK provider class ``OTEL_PYTHON_TRACER_PROVIDER`` names (default: the SDK's own).

    It has to be the SDK's ``TracerProvider`` or a subclass: it is given the resource and id
    generator and gets the span processors. The lean one falls back to the SDK's, with one
    warning, when the installed SDK lacks what it reads (:func:`lean_spans_unsupported`).
    """
    name = environ.get(OTEL_PYTHON_TRACER_PROVIDER, "").strip() or "sdk_tracer_provider"
    kind = _entry_point_class(
        OTEL_PYTHON_TRACER_PROVIDER, "opentelemetry_tracer_provider", name, TracerProvider
    )
    if issubclass(kind, LeanTracerProvider) and (missing := lean_spans_unsupported()):
        log.warning(
            "%s=%s: the installed opentelemetry-sdk %s lacks what the lean spans read (%s); "
            "using the SDK's spans",
            OTEL_PYTHON_TRACER_PROVIDER,
            name,
            version("opentelemetry-sdk"),
            missing,
        )
        return TracerProvider
    return kind


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    """The span exporter ``OTEL_TRACES_EXPORTER`` calls ``name``.

    ``otlp`` (the default) is OTLP over HTTP, encoded as ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``
    says: ``http/protobuf`` (the default, :data:`DEFAULT_OTLP_PROTOCOL`, as the SDK's) is the
    official exporter; ``http/json`` the project's (:mod:`broker.telemetry.otlp`, opt-in: it
    cleared its interval against the official one at 100% sampling,
    docs/adr/otel-json-exporter.md); gRPC is not installed. Any other name is an
    ``opentelemetry_traces_exporter`` entry point, as for the SDK's own configurator:
    ``otlp_json`` is the project's exporter whatever the protocol says, ``otlp_proto_http`` the
    official one. The project's reads ``environ``; the others read the process environment.
    """
    if name == "otlp":
        raw = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", ""
        )
        match protocol := raw.strip().lower() or DEFAULT_OTLP_PROTOCOL:
            case "http/json":
                return OtlpJsonSpanExporter.from_env(environ)
            case "http/protobuf":
                name = "otlp_proto_http"
            case _:
                raise ConfigError(
                    "OTEL_EXPORTER_OTLP_PROTOCOL must be http/json or http/protobuf, "
                    f"got {protocol!r}"
                )
    kind = _entry_point_class(
        "OTEL_TRACES_EXPORTER", "opentelemetry_traces_exporter", name, SpanExporter
    )
    if issubclass(kind, OtlpJsonSpanExporter):
        return kind.from_env(environ)
    exporter: SpanExporter = kind()
    return exporter


class PresetTraceIds(RandomIdGenerator):
    """The SDK's random ids, except that a trace id drawn ahead of its root span is used for it.

    drama-service asks the sampler about a request before the stock SERVER-span middleware
    builds anything for it (``drama/serverspan.py``). When the answer is yes, the middleware
    starts the span, and the SDK draws a trace id and asks the sampler again: with a new id, a
    ratio sampler would decide anew, and 10% would come out as 1%. Under :meth:`preset` the SDK
    gets the trace id that was already decided on, and the sampler says the same again.
    """

    def __init__(self) -> None:
        self._next: ContextVar[int] = ContextVar("preset_trace_id", default=0)

    def generate_trace_id(self) -> int:
        preset = self._next.get()
        if preset:
            self.discard()  # once: a second root in the same task gets its own
            return preset
        return super().generate_trace_id()

    def discard(self) -> None:
        """Forget a preset trace id this task's spans have not taken."""
        self._next.set(0)

    @contextmanager
    def preset(self, trace_id: int) -> Iterator[None]:
        """The next trace id this task's spans ask for is ``trace_id``."""
        token = self._next.set(trace_id)
        try:
            yield
        finally:
            self._next.reset(token)


def instrument_engine(
    engine: AsyncEngine, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """Database CLIENT spans for every statement ``engine`` runs."""
    # EngineTracer is what SQLAlchemyInstrumentor(engine=...) builds; the instrumentor itself
    # is a process-wide singleton that instruments one engine, and tests open several.
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer  # noqa: PLC0415
    from opentelemetry.instrumentation.sqlalchemy.version import __version__  # noqa: PLC0415

    tracer = trace.get_tracer(
        "opentelemetry.instrumentation.sqlalchemy", __version__, tracer_provider=tracer_provider
    )
    usage = metrics.get_meter("opentelemetry.instrumentation.sqlalchemy").create_up_down_counter(
        "db.client.connections.usage"
    )
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


# -- per-request timing of RPC calls (Server-Timing, logs) ------------------------------------


class CallTiming(NamedTuple):
    """What one call cost, as the caller measured it (nanoseconds)."""

    method: str
    round_trip_ns: int  # publish to reply, caller's monotonic clock
    handler_ns: int  # the worker's handler time (x-handler-ns)
    queue_wait_ns: int  # the request's wait in the queue, callee-measured (x-queue-wait-ns)
    reply_wait_ns: int  # the reply's way back, reply x-sent-at-ns to receipt (wall clocks)

    @property
    def overhead_ns(self) -> int:
        """Round trip minus handler: queue, broker and network, free of clock skew."""
        return max(0, self.round_trip_ns - self.handler_ns)


_timings: ContextVar[list[CallTiming] | None] = ContextVar("rpc_timings", default=None)


@contextmanager
def collect_timings() -> Iterator[list[CallTiming]]:
    """Collect the :class:`CallTiming` of every call made inside the block (this task)."""
    sink: list[CallTiming] = []
    token = _timings.set(sink)
    try:
        yield sink
    finally:
        _timings.reset(token)


def record_timing(timing: CallTiming) -> None:
    sink = _timings.get()
    if sink is not None:
        sink.append(timing)


# -- which requests get a log line --------------------------------------------------------------

REQUEST_LOG_CHOICES = ("errors", "sampled", "all")
_request_log = "errors"


def set_request_log(policy: str) -> None:
    """``REQUEST_LOG``: which requests (drama's HTTP ones, the workers' RPCs) get a log line.

    ``errors`` (the default): the ones that failed; ``sampled``: those, and the others when
    their trace is sampled, so that each line has a trace to go with it; ``all``: every one.
    Metrics count every request and traces show them whatever this says; a line for each
    success cost throughput at 100% sampling (docs/performance.md, "Measured choices").
    """
    global _request_log  # noqa: PLW0603 - one setting per process, set once by service_main
    if policy not in REQUEST_LOG_CHOICES:
        raise ConfigError(f"REQUEST_LOG must be one of {', '.join(REQUEST_LOG_CHOICES)}")
    _request_log = policy


def request_logged(ok: bool, span: trace.Span) -> bool:
    """Whether a request that ended ``ok`` (or not), under ``span``, gets its log line."""
    if not ok or _request_log == "all":
        return True
    return _request_log == "sampled" and span.get_span_context().trace_flags.sampled


def records_nothing(provider: trace.TracerProvider | None, parent: trace.SpanContext) -> bool:
    """Whether a span made here, under ``parent``, would record nothing: inside a trace whose
    sampler said no, or with no SDK installed (``OTEL_SDK_DISABLED``; ``provider`` None and no
    global one). Without a parent, a root span is the sampler's to decide.
    """
    if parent.is_valid and not parent.trace_flags.sampled:
        return True
    return provider is None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def recorded_span(
    tracer: trace.Tracer,
    provider: trace.TracerProvider | None,
    name: str,
    **options: Any,
) -> AbstractContextManager[trace.Span]:
    """``tracer.start_as_current_span(name, **options)``, or, where that span would record
    nothing (:func:`records_nothing` under the current span), no span at all: the SDK's
    non-recording span costs CPU for nothing, 9 requests in 10 at 10% sampling.
    The current context stays as it is, so the trace id still reaches logs and callees."""
    if records_nothing(provider, trace.get_current_span().get_span_context()):
        return nullcontext(trace.INVALID_SPAN)
    return tracer.start_as_current_span(name, **options)


def span_error(span: trace.Span, error_type: str, description: str) -> None:
    """Mark ``span`` failed the way the semantic conventions ask: status and ``error.type``."""
    span.set_status(trace.Status(trace.StatusCode.ERROR, description))
    span.set_attribute("error.type", error_type)


def messaging_attributes(
    operation: str, exchange: str, method: str, correlation_id: str | None, body: bytes
) -> dict[str, Any]:
    """The ``messaging.*`` attributes of a RabbitMQ span (semantic conventions 1.27+)."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": method,
        "messaging.message.body.size": len(body),
    }
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes


def wait_attributes(
    method: str, correlation_id: str | None, name: str, wait_ns: int
) -> dict[str, Any]:
    """The attributes of a ``queue wait`` or ``reply wait`` span: what finds it (system, routing
    key, conversation) and the wait in ms under ``name``. The rest of ``messaging.*`` is on the
    send and process spans beside it; repeating it here cost CPU on every traced request."""
    attributes: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.rabbitmq.destination.routing_key": method,
        name: wait_ns / 1e6,
    }
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes
