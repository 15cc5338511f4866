"""Telemetry: tracing set-up (:func:`configure_tracing`), spans, the OTLP/JSON export, the
Prometheus metrics and ``/metrics``, per-call timings and the request log policy."""

from broker.telemetry.metrics import (
    BUCKETS,
    exemplar,
    metrics_app,
    metrics_handler,
    serving_metrics,
)
from broker.telemetry.spans import LeanSpan, LeanTracerProvider
from broker.telemetry.tracing import (
    CallTiming,
    PresetTraceIds,
    collect_timings,
    configure_tracing,
    instrument_engine,
    recorded_span,
    request_logged,
    set_request_log,
)

__all__ = [
    "BUCKETS",
    "CallTiming",
    "LeanSpan",
    "LeanTracerProvider",
    "PresetTraceIds",
    "collect_timings",
    "configure_tracing",
    "exemplar",
    "instrument_engine",
    "metrics_app",
    "metrics_handler",
    "recorded_span",
    "request_logged",
    "serving_metrics",
    "set_request_log",
]
