"""OTLP/HTTP with the JSON encoding: the span exporter the services use by default.

Why not the official ``OTLPSpanExporter``: at 100% sampling a py-spy profile of drama-service
put ~20% of its CPU in the batch processor's export thread, ~15 points of it building protobuf
message objects (``encode_spans``), one Python object per span, attribute and value. Here a
span of the common shape is written directly as bytes, from templates and msgspec's JSON of
its strings; a rarer one (events, links, an error...) becomes a plain dict for msgspec to
write in C. It goes out on one kept-alive urllib3 connection. ``loadtest/bench_export.py``
measures the two: ~6x less CPU a span to encode.

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
from binascii import hexlify
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec
import urllib3
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode
from opentelemetry.util.re import parse_env_headers

from ._errors import ConfigError
from ._spans import LeanSpan

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
# The same names, with a value's JSON to come (msgspec writes the ints as `%d` does).
_VALUE_TEMPLATES = {
    str: b'{"stringValue":%s}}',
    int: b'{"intValue":"%s"}}',
    float: b'{"doubleValue":%s}}',
}
_templates: dict[type, dict[str, bytes]] = {kind: {} for kind in _VALUE_TEMPLATES}


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


def _template(key: str, kind: type) -> bytes:
    """A whole attribute with a value of ``kind``, to ``%`` with the value's JSON."""
    template = _key(key).replace(b"%", b"%%") + _VALUE_TEMPLATES[kind]
    if len(_templates[kind]) < _KEYS_KEPT:
        _templates[kind][key] = template
    return template


def _pairs(attributes: Mapping[str, Any]) -> bytes:
    """The ``KeyValue`` of ``attributes``, comma separated. A string, int or finite float (most
    values) goes into its key's template in one step: a concatenation costs ~1% of a span."""
    pairs = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is str or kind is int or (kind is float and math.isfinite(value)):
            pairs.append((_templates[kind].get(key) or _template(key, kind)) % _json(value))
            continue
        try:
            pairs.append(_key(key) + _value_json(value) + b"}")
        except TypeError as error:  # dropped, as the official encoder drops it
            log.warning("span attribute %r not exported: %s", key, error)
    return b",".join(pairs)


def _attributes(attributes: Mapping[str, object]) -> msgspec.Raw:
    """A list of ``KeyValue`` as JSON, written here rather than built as two dicts a pair for
    msgspec: those cost more than the encoding, and half of it in garbage collections."""
    return msgspec.Raw(b"[" + _pairs(attributes) + b"]")


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


def _scope_spans(scope: InstrumentationScope | None, spans: list[bytes]) -> Json:
    document: Json = {"scope": {}, "spans": msgspec.Raw(b"[" + b",".join(spans) + b"]")}
    if scope is not None:
        fields = {"name": scope.name, "version": scope.version}
        document["scope"] = {key: value for key, value in fields.items() if value}
        if scope.attributes:
            document["scope"]["attributes"] = _attributes(scope.attributes)
        if scope.schema_url:
            document["schemaUrl"] = scope.schema_url
    return document


def _resource_spans(resource: Resource, scopes: Mapping[Any, list[bytes]]) -> Json:
    document: Json = {
        "resource": {"attributes": _attributes(resource.attributes)},
        "scopeSpans": [_scope_spans(scope, spans) for scope, spans in scopes.items()],
    }
    if resource.schema_url:
        document["schemaUrl"] = resource.schema_url
    return document


# A span of the common shape (no events, links, trace state or dropped counts, status unset)
# is written in one formatting step, without the dict `_span` builds for msgspec; the others
# go that way. Every argument is bytes already: `%d` and `%032x` cost about twice what msgspec
# and hexlify do.
_PLAIN_SPAN = (
    b'{"traceId":"%s","spanId":"%s"%s,"name":%s,"kind":%s,'
    b'"startTimeUnixNano":"%s","endTimeUnixNano":"%s"%s,"status":{}}'
)
_ROOT = b',"flags":%d' % _LOCAL
_CHILD = b',"flags":%d,"parentSpanId":"' % _LOCAL
_REMOTE_CHILD = b',"flags":%d,"parentSpanId":"' % _REMOTE
_KIND_JSON = {kind: b"%d" % otlp for kind, otlp in _KINDS.items()}


def _has_events_or_links(span: ReadableSpan) -> bool:
    """Whether ``span.events`` or ``span.links`` is not empty. Each copies the SDK's list under
    its lock (~0.4 µs, ~8% of a span): the lists of a ReadableSpan proper, what the SDK hands
    the exporter, or of a LeanSpan, which the services' tracers hand it, are looked at instead;
    another subclass may override the properties."""
    if type(span) is ReadableSpan or type(span) is LeanSpan:
        return bool(span._events or span._links)
    return bool(span.events or span.links)


def _plain_span(span: ReadableSpan) -> bytes | None:
    """``span`` as JSON if it has the common shape, else None (for `_span`)."""
    context = span.get_span_context()
    name, start, end = span.name, span.start_time, span.end_time
    if (
        context is None
        or context.trace_state
        or type(name) is not str
        or type(start) is not int
        or type(end) is not int
        or span.status.status_code is not StatusCode.UNSET
        or _has_events_or_links(span)
        or span.dropped_attributes
        or span.dropped_events
        or span.dropped_links
    ):
        return None
    if (parent := span.parent) is None:
        parent_json = _ROOT
    else:
        parent_json = (
            (_REMOTE_CHILD if parent.is_remote else _CHILD)
            + hexlify(parent.span_id.to_bytes(8, "big"))
            + b'"'
        )
    attributes: Mapping[str, object]
    try:  # a view of the SDK's BoundedAttributes, whose copy is a dict made in C: iterating
        attributes = span.attributes.copy()  # type: ignore[union-attr] # the view costs 3x more
    except AttributeError:  # the view of some other mapping
        attributes = span.attributes or {}
    pairs = _pairs(attributes)
    return _PLAIN_SPAN % (
        hexlify(context.trace_id.to_bytes(16, "big")),
        hexlify(context.span_id.to_bytes(8, "big")),
        parent_json,
        _json(name),
        _KIND_JSON[span.kind],
        _json(start),
        _json(end),
        b',"attributes":[' + pairs + b"]" if pairs else b"",
    )


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The ``ExportTraceServiceRequest`` of ``spans`` in OTLP/JSON."""
    groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    # Resources and scopes are shared objects, and hashing one serialises its attributes:
    # look each object up by identity, and by equality only the first time it is seen.
    by_identity: dict[tuple[int, int], list[bytes]] = {}
    for span in spans:
        scope = span.instrumentation_scope or None
        key = (id(span.resource), id(scope))
        if (group := by_identity.get(key)) is None:
            group = groups.setdefault(span.resource, {}).setdefault(scope, [])
            by_identity[key] = group
        group.append(_plain_span(span) or _json(_span(span)))
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
