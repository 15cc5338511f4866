"""OTLP/HTTP with the JSON encoding: the span exporter the services use by default.

Why not the official ``OTLPSpanExporter``: at 100% sampling a py-spy profile of drama-service
put ~20% of its CPU in the batch processor's export thread, ~15 points of it building protobuf
message objects (``encode_spans``), one Python object per span, attribute and value. Here a
span becomes a plain dict, its attribute lists bytes written directly, and msgspec writes the
JSON in C; it goes out on one kept-alive urllib3 connection. ``loadtest/bench_export.py``
measures the two: ~3.6x less CPU a span to encode.

The encoding is OTLP's JSON mapping of the same ``ExportTraceServiceRequest`` the official
encoder builds (``tests/test_otlp_json.py`` parses one into the other and compares): field
names in lowerCamelCase, trace and span ids as lower-case hex, enums as integers, 64-bit
integers (times, ``intValue``) as decimal strings, fields at their default left out, spans
grouped by resource, then by instrumentation scope, in order of first appearance.

Settings are the standard ones, read from the mapping given to :meth:`OtlpJsonSpanExporter.from_env`
(the signal-specific ``OTEL_EXPORTER_OTLP_TRACES_*`` first): ``ENDPOINT`` (the base URL, to which
``/v1/traces`` is added; the ``TRACES_`` one is used as is), ``HEADERS``, ``TIMEOUT`` (seconds, as
the Python SDK reads it, default 10), ``COMPRESSION`` (``gzip``, ``deflate``, ``none``) and the
TLS files ``CERTIFICATE``, ``CLIENT_CERTIFICATE``, ``CLIENT_KEY``.
"""

from __future__ import annotations

import base64
import gzip
import logging
import math
import random
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec
import urllib3
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind
from opentelemetry.util.re import parse_env_headers

from ._errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["OtlpJsonSpanExporter", "encode_spans"]

Json = dict[str, Any]

# SpanKind is 0-based in the API and 1-based in OTLP (0 is SPAN_KIND_UNSPECIFIED there).
_KINDS = {kind: kind.value + 1 for kind in SpanKind}
# SpanFlags: bit 8 says bit 9 is meaningful, bit 9 says the parent (or link) is remote.
_LOCAL, _REMOTE = 0x100, 0x300
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}
_TRUE, _FALSE = b'{"boolValue":true}', b'{"boolValue":false}'
_KEYS_KEPT = 4096

_json = msgspec.json.encode
_keys: dict[str, bytes] = {}  # attribute names are few (the semantic conventions'): kept


# --- encoding ---------------------------------------------------------------------------------


def _value(value: object) -> Json:
    """An ``AnyValue``; bool is checked before int, as in the official encoder."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(int(value))}
    if isinstance(value, float):  # protobuf JSON spells the non-finite ones as strings
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE.get(value, "NaN")}
    return _rare_value(value)


def _rare_value(value: object) -> Json:
    if value is None:
        return {}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _attributes(value)}}
    raise TypeError(f"cannot encode a {type(value).__name__}")


def _value_json(value: object) -> bytes:
    """``_value(value)`` as JSON; the common scalars written directly."""
    if type(value) is str:
        return b'{"stringValue":' + _json(value) + b"}"
    if type(value) is int:
        return b'{"intValue":"%d"}' % value
    if type(value) is bool:
        return _TRUE if value else _FALSE
    if type(value) is float and math.isfinite(value):
        return b'{"doubleValue":' + _json(value) + b"}"
    return _json(_value(value))


def _key(key: str) -> bytes:
    """The start of an attribute, up to its value: ``{"key":"...","value":``."""
    start = _keys.get(key)
    if start is None:
        start = b'{"key":' + _json(key) + b',"value":'
        if len(_keys) < _KEYS_KEPT:
            _keys[key] = start
    return start


def _attributes(attributes: Mapping[str, object]) -> msgspec.Raw:
    """A list of ``KeyValue`` as JSON, written here rather than built as two dicts a pair for
    msgspec: those cost more than the encoding, and half of it in garbage collections."""
    pairs = []
    for key, value in attributes.items():
        try:
            pairs.append(_key(key) + _value_json(value) + b"}")
        except TypeError as error:  # dropped, as the official encoder drops it
            log.warning("span attribute %r not exported: %s", key, error)
    return msgspec.Raw(b"[" + b",".join(pairs) + b"]")


def _flags(context: SpanContext | None) -> int:
    return _REMOTE if context is not None and context.is_remote else _LOCAL


def _span(span: ReadableSpan) -> Json:
    context = span.get_span_context()
    assert context is not None  # a ReadableSpan always has one
    parent = span.parent
    document: Json = {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
        "flags": _flags(parent),
        "name": span.name,
        "kind": _KINDS[span.kind],
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
    }
    if parent is not None:
        document["parentSpanId"] = f"{parent.span_id:016x}"
    if context.trace_state:
        document["traceState"] = context.trace_state.to_header()
    if attributes := span.attributes:
        document["attributes"] = _attributes(attributes)
    if dropped := span.dropped_attributes:
        document["droppedAttributesCount"] = dropped
    if events := span.events:
        document["events"] = [_event(event) for event in events]
    if dropped := span.dropped_events:
        document["droppedEventsCount"] = dropped
    if links := span.links:
        document["links"] = [_link(link) for link in links]
    if dropped := span.dropped_links:
        document["droppedLinksCount"] = dropped
    status = span.status
    if code := status.status_code.value:
        document["status"] = {"code": code, "message": status.description or ""}
    else:  # always present, as the official encoder sets it; empty is the default
        document["status"] = {}
    return document


def _event(event: Event) -> Json:
    document: Json = {"timeUnixNano": str(event.timestamp), "name": event.name}
    if event.attributes:
        document["attributes"] = _attributes(event.attributes)
    if event.dropped_attributes:
        document["droppedAttributesCount"] = event.dropped_attributes
    return document


def _link(link: Link) -> Json:
    # As in the official encoder, a link's trace state is not exported.
    document: Json = {
        "traceId": f"{link.context.trace_id:032x}",
        "spanId": f"{link.context.span_id:016x}",
        "flags": _flags(link.context),
    }
    if link.attributes:
        document["attributes"] = _attributes(link.attributes)
    if link.dropped_attributes:
        document["droppedAttributesCount"] = link.dropped_attributes
    return document


def _scope_spans(scope: InstrumentationScope | None, spans: list[Json]) -> Json:
    document: Json = {"scope": {}, "spans": spans}
    if scope is not None:
        fields = {"name": scope.name, "version": scope.version}
        document["scope"] = {key: value for key, value in fields.items() if value}
        if scope.attributes:
            document["scope"]["attributes"] = _attributes(scope.attributes)
        if scope.schema_url:
            document["schemaUrl"] = scope.schema_url
    return document


def _resource_spans(resource: Resource, scopes: Mapping[Any, list[Json]]) -> Json:
    document: Json = {
        "resource": {"attributes": _attributes(resource.attributes)},
        "scopeSpans": [_scope_spans(scope, spans) for scope, spans in scopes.items()],
    }
    if resource.schema_url:
        document["schemaUrl"] = resource.schema_url
    return document


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans`` in OTLP/JSON."""
    groups: dict[Resource, dict[InstrumentationScope | None, list[Json]]] = {}
    # Resources and scopes are shared objects, and hashing one serialises its attributes:
    # look each object up by identity, and by equality only the first time it is seen.
    by_identity: dict[tuple[int, int], list[Json]] = {}
    for span in spans:
        scope = span.instrumentation_scope or None
        key = (id(span.resource), id(scope))
        if (group := by_identity.get(key)) is None:
            group = groups.setdefault(span.resource, {}).setdefault(scope, [])
            by_identity[key] = group
        group.append(_span(span))
    document = {
        "resourceSpans": [_resource_spans(resource, scopes) for resource, scopes in groups.items()]
    }
    return _json(document)


# --- sending ----------------------------------------------------------------------------------

_RETRYABLE = frozenset({429, 502, 503, 504})  # as the official exporter: the rest is final
_MAX_ATTEMPTS = 6
_COMPRESSORS = {
    "none": None,
    "gzip": lambda body: gzip.compress(body, compresslevel=6),
    "deflate": zlib.compress,
}


def _retry_after(raw: str | None) -> float | None:
    """``Retry-After`` in seconds from now: delay-seconds or an HTTP date (RFC 9110)."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class OtlpJsonSpanExporter(SpanExporter):
    """Sends spans as OTLP/JSON to ``endpoint`` (the full ``.../v1/traces`` URL).

    Runs in the batch processor's thread, so it blocks: one connection, kept alive. A 429, 502,
    503, 504 or a connection failure is retried with exponential backoff (1, 2, 4 s ±20%, or the
    server's ``Retry-After``) while the next attempt still fits in ``timeout`` seconds; any other
    answer fails the batch at once. Failures are logged without headers (they carry credentials)
    and without the endpoint (it may too); :meth:`export` never raises for them.
    """

    def __init__(
        self,
        endpoint: str = "http://localhost:4318/v1/traces",
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        compression: str = "none",
        certificate: str | None = None,
        client_certificate: str | None = None,
        client_key: str | None = None,
    ) -> None:
        if compression not in _COMPRESSORS:
            raise ConfigError(
                f"OTLP compression must be gzip, deflate or none, got {compression!r}"
            )
        self._endpoint = endpoint
        self._timeout = timeout
        self._compress = _COMPRESSORS[compression]
        self._headers = {"Content-Type": "application/json", "User-Agent": "drama-streaming-otlp"}
        if self._compress is not None:
            self._headers["Content-Encoding"] = compression
        self._headers |= headers or {}
        tls: dict[str, Any] = {"ca_certs": certificate} if certificate else {}
        if client_certificate:
            tls |= {"cert_file": client_certificate, "key_file": client_key}
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False, **tls)
        self._stopping = threading.Event()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OtlpJsonSpanExporter:
        """The exporter the ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables describe."""

        def setting(name: str) -> str | None:
            value = environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(
                f"OTEL_EXPORTER_OTLP_{name}"
            )
            return value.strip() if value else None

        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not endpoint:
            base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
            endpoint = base.rstrip("/") + "/v1/traces"
        raw_timeout = setting("TIMEOUT") or "10"
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = math.nan
        if not 0 < timeout < math.inf:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_TIMEOUT must be seconds > 0, got {raw_timeout!r}"
            )
        return cls(
            endpoint,
            headers=parse_env_headers(setting("HEADERS") or "", liberal=True),
            timeout=timeout,
            compression=(setting("COMPRESSION") or "none").lower(),
            certificate=setting("CERTIFICATE"),
            client_certificate=setting("CLIENT_CERTIFICATE"),
            client_key=setting("CLIENT_KEY"),
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopping.is_set():
            return SpanExportResult.FAILURE
        body = encode_spans(spans)
        if self._compress is not None:
            body = self._compress(body)
        if self._send(body, len(spans)):
            return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    def _send(self, body: bytes, count: int) -> bool:
        deadline = time.monotonic() + self._timeout
        for attempt in range(_MAX_ATTEMPTS):
            try:
                response = self._pool.request(
                    "POST",
                    self._endpoint,
                    body=body,
                    headers=self._headers,
                    timeout=urllib3.Timeout(total=max(deadline - time.monotonic(), 0.001)),
                )
            except urllib3.exceptions.HTTPError as error:  # refused, reset, timed out
                problem, wait = type(error).__name__, None
            else:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status} {response.reason or ''}".strip()
                if response.status not in _RETRYABLE:
                    log.error("OTLP export of %d spans failed: %s", count, problem)
                    return False
                wait = _retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = 2**attempt * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)
            if attempt + 1 == _MAX_ATTEMPTS or wait > deadline - time.monotonic():
                log.error("OTLP export of %d spans failed, not retried in time: %s", count, problem)
                return False
            log.warning("OTLP export: %s, retrying in %.2f s", problem, wait)
            if self._stopping.wait(wait):
                return False
        return False  # pragma: no cover (the loop returns on its last attempt)

    def shutdown(self) -> None:
        """Stop: a retry waiting for its backoff gives up now, and the connection is closed."""
        self._stopping.set()
        self._pool.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: the batch processor flushes."""
        return True
