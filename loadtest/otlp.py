"""The one OTLP codec of the tools: export requests in, the project's span records out.

What the services export (OTLP/HTTP, protobuf or JSON) is read here and nowhere else: by the
dev stack's sink (``loadtest.devstack.sink``: counts the spans, writes each request as a line
of OTLP-JSON), by the analyser (``loadtest.analysis.traces``: OTLP-JSON files and Jaeger v3
answers) and by the tests' receiver (``tests/otlp.py``). Every path ends in `Span`:

- protobuf ``ExportTraceServiceRequest`` -> OTLP-JSON (`otlp_json`, ids in hex as OTLP/JSON
  asks), the form the sink's files hold;
- OTLP/JSON body -> ``ExportTraceServiceRequest`` strictly (`request_from_json`: an unknown
  field fails), what the tests hold the services' JSON exporter to;
- OTLP-JSON document -> `Span` (`otlp_spans`), whatever spelling of ids and kinds it uses.

Times are kept in integer nanoseconds, as OTLP sends them; the analyser reads them as integer
microseconds (`Span.start_us`, the resolution Jaeger stores) so that it accounts for every
microsecond exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_ERROR = (2, "2", "STATUS_CODE_ERROR")  # OTLP's status code ERROR, as a number or its name
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class Span:
    """One span, format-free. ``parent_id`` is "" for a root; times are integer nanoseconds."""

    trace_id: str
    span_id: str
    parent_id: str
    service: str
    name: str
    kind: str  # one of KINDS
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    follows_from: bool = False  # the parent reference is FOLLOWS_FROM: the parent did not wait
    # Span ids this span links to (OTLP links, Jaeger's other FOLLOWS_FROM references): a
    # consumer linked to its producer instead of parented to it (docs/analysis.md, rule 2).
    links: tuple[str, ...] = field(default=(), hash=False, compare=False)
    error: bool = False  # the span's status is ERROR

    @property
    def start_us(self) -> int:
        return self.start_ns // 1000

    @property
    def end_us(self) -> int:
        return self.end_ns // 1000

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


class TraceFormatError(ValueError):
    """A document is neither Jaeger JSON nor OTLP-JSON, or a span in it lacks what it needs."""


def normalise_id(raw: str, size: int) -> str:
    """An id of ``size`` bytes as lower-case hex, from hex (any case, unpadded) or base64.

    Full-length hex is hex; otherwise base64 that decodes to ``size`` bytes (padded or not) is
    base64; otherwise shorter hex is hex with its leading zeros dropped, as Jaeger may write it.
    """
    if not raw:
        return ""
    is_hex = set(raw) <= _HEX
    if is_hex and len(raw) == size * 2:
        return raw.lower()
    try:
        decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error:
        decoded = b""
    if len(decoded) == size:
        return decoded.hex()
    if is_hex and len(raw) < size * 2:
        return raw.lower().rjust(size * 2, "0")
    raise TraceFormatError(f"id {raw!r} is neither hex nor base64 of {size} bytes")


def span_kind(raw: object) -> str:
    """One of `KINDS`, from OTLP's number, its enum name, or Jaeger's ``span.kind`` tag."""
    if isinstance(raw, int) and 0 <= raw < len(KINDS):
        return KINDS[raw]
    if isinstance(raw, str):
        name = raw.upper().removeprefix("SPAN_KIND_")
        if name in KINDS:
            return name
        if name.isdigit():
            return span_kind(int(name))
    if raw is None:
        return "UNSPECIFIED"
    raise TraceFormatError(f"unknown span kind {raw!r}")


# --- OTLP-JSON -> spans -----------------------------------------------------------------------


def _any_value(value: Mapping[str, Any]) -> Any:
    for key, raw in value.items():
        if key == "intValue":
            return int(raw)  # int64 travels as a string in OTLP-JSON
        if key == "arrayValue":
            return [_any_value(item) for item in raw.get("values", [])]
        if key == "kvlistValue":
            return otlp_attributes(raw.get("values", []))
        return raw
    return None


def otlp_attributes(pairs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """OTLP-JSON ``[{"key": ..., "value": {"stringValue": ...}}]`` as a plain dict."""
    return {pair["key"]: _any_value(pair.get("value", {})) for pair in pairs}


def otlp_spans(document: Mapping[str, Any]) -> Iterator[Span]:
    """The spans of one OTLP ``ExportTraceServiceRequest``/``TracesData`` in JSON form."""
    for resource_spans in document.get("resourceSpans", []):
        resource = otlp_attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", "unknown"))
        scopes = resource_spans.get("scopeSpans") or resource_spans.get(
            "instrumentationLibrarySpans", []
        )
        for scope in scopes:
            for span in scope.get("spans", []):
                yield Span(
                    trace_id=normalise_id(span["traceId"], 16),
                    span_id=normalise_id(span["spanId"], 8),
                    parent_id=normalise_id(span.get("parentSpanId", ""), 8),
                    service=service,
                    name=span.get("name", ""),
                    kind=span_kind(span.get("kind")),
                    start_ns=int(span["startTimeUnixNano"]),
                    end_ns=int(span["endTimeUnixNano"]),
                    attributes=otlp_attributes(span.get("attributes", [])),
                    links=tuple(
                        normalise_id(link["spanId"], 8)
                        for link in span.get("links") or []
                        if link.get("spanId")
                    ),
                    error=(span.get("status") or {}).get("code") in _ERROR,
                )


# --- protobuf -> OTLP-JSON --------------------------------------------------------------------

_SCALARS = {"string_value": "stringValue", "bool_value": "boolValue", "double_value": "doubleValue"}


def _value(value: AnyValue) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}  # int64 is a string in protobuf's JSON
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode()}
    if kind == "array_value":
        return {"arrayValue": {"values": [_value(item) for item in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(value.kvlist_value.values)}}
    return {_SCALARS[kind]: getattr(value, kind)}


def _attributes(pairs: Iterable[KeyValue]) -> list[dict[str, Any]]:
    return [{"key": pair.key, "value": _value(pair.value)} for pair in pairs]


def _nonzero(**fields: Any) -> dict[str, Any]:
    """Protobuf's JSON leaves out fields at their default; so does this."""
    return {key: value for key, value in fields.items() if value not in ("", 0, "0", [], {})}


def _span(span: PbSpan) -> dict[str, Any]:
    document = _nonzero(
        traceId=span.trace_id.hex(),
        spanId=span.span_id.hex(),
        traceState=span.trace_state,
        parentSpanId=span.parent_span_id.hex(),
        flags=span.flags,
        name=span.name,
        kind=span.kind,
        startTimeUnixNano=str(span.start_time_unix_nano),
        endTimeUnixNano=str(span.end_time_unix_nano),
        attributes=_attributes(span.attributes),
        droppedAttributesCount=span.dropped_attributes_count,
        events=[
            _nonzero(
                timeUnixNano=str(event.time_unix_nano),
                name=event.name,
                attributes=_attributes(event.attributes),
                droppedAttributesCount=event.dropped_attributes_count,
            )
            for event in span.events
        ],
        droppedEventsCount=span.dropped_events_count,
        links=[
            _nonzero(
                traceId=link.trace_id.hex(),
                spanId=link.span_id.hex(),
                traceState=link.trace_state,
                attributes=_attributes(link.attributes),
                droppedAttributesCount=link.dropped_attributes_count,
                flags=link.flags,
            )
            for link in span.links
        ],
        droppedLinksCount=span.dropped_links_count,
    )
    if span.HasField("status"):  # a set message field is written even if empty
        document["status"] = _nonzero(message=span.status.message, code=span.status.code)
    return document


def _scope_spans(scope_spans: ScopeSpans) -> dict[str, Any]:
    document = _nonzero(
        spans=[_span(span) for span in scope_spans.spans], schemaUrl=scope_spans.schema_url
    )
    if scope_spans.HasField("scope"):
        scope = scope_spans.scope
        document["scope"] = _nonzero(
            name=scope.name,
            version=scope.version,
            attributes=_attributes(scope.attributes),
            droppedAttributesCount=scope.dropped_attributes_count,
        )
    return document


def _resource_spans(resource_spans: ResourceSpans) -> dict[str, Any]:
    document = _nonzero(
        scopeSpans=[_scope_spans(scope) for scope in resource_spans.scope_spans],
        schemaUrl=resource_spans.schema_url,
    )
    if resource_spans.HasField("resource"):
        resource = resource_spans.resource
        document["resource"] = _nonzero(
            attributes=_attributes(resource.attributes),
            droppedAttributesCount=resource.dropped_attributes_count,
        )
    return document


def otlp_json(payload: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request in OTLP-JSON: protobuf's JSON mapping, except ids in hex, as OTLP asks.

    Written out by hand: ``json_format.MessageToDict`` costs 3-5 times as much CPU a span.
    """
    return {"resourceSpans": [_resource_spans(resource) for resource in payload.resource_spans]}


# --- OTLP/JSON -> protobuf --------------------------------------------------------------------


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def request_from_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body as the message it stands for, strictly (unknown fields fail).

    OTLP/JSON is protobuf's JSON mapping except for the ids, hex instead of base64: they are
    turned back into base64 before protobuf's own parser reads the rest.
    """
    document = json.loads(body)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for field_name in ("traceId", "spanId", "parentSpanId"):
                        if field_name in item:
                            item[field_name] = _b64(item[field_name])
    return json_format.ParseDict(document, ExportTraceServiceRequest())


# --- an export request as a receiver reads it -------------------------------------------------

Payload = ExportTraceServiceRequest | bytes  # bytes: an OTLP/JSON body, kept as it came


class _JsonScope(msgspec.Struct):
    spans: list[msgspec.Raw] = []  # counted, not parsed


class _JsonResource(msgspec.Struct, rename="camel"):
    scope_spans: list[_JsonScope]


class _JsonRequest(msgspec.Struct, rename="camel"):
    resource_spans: list[_JsonResource] = []


# Counting the spans of a JSON export without building them: ~10x cheaper than json.loads,
# and the sink's CPU counts in make bench's totals.
_json_request = msgspec.json.Decoder(_JsonRequest)

# What a body that is not an export request raises, whichever way it was read.
DECODE_ERRORS = (DecodeError, msgspec.DecodeError, ValueError, KeyError, AttributeError, TypeError)


def counted(body: bytes, is_json: bool) -> tuple[Payload, int]:
    """The request and its span count, the spans themselves not built: the sink's fast path.

    Raises one of `DECODE_ERRORS` if the body is not an ``ExportTraceServiceRequest``.
    """
    if is_json:  # OTLP/HTTP's JSON encoding
        document = _json_request.decode(body)  # spans are not parsed, so not checked
        body.decode()  # UTF-8 inside them too, or the span file's writer would choke on it
        return body, sum(len(s.spans) for r in document.resource_spans for s in r.scope_spans)
    payload = ExportTraceServiceRequest.FromString(body)
    scopes = [scope for resource in payload.resource_spans for scope in resource.scope_spans]
    return payload, sum(len(scope.spans) for scope in scopes)


def request_spans(body: bytes, is_json: bool) -> list[Span]:
    """Every span of an export request, a JSON one read strictly (`request_from_json`)."""
    payload = request_from_json(body) if is_json else ExportTraceServiceRequest.FromString(body)
    return list(otlp_spans(otlp_json(payload)))


# --- the sink's files -------------------------------------------------------------------------


def rotated_set(path: Path) -> list[Path]:
    """``path`` and the files the sink rotated it into, oldest first: ..., FILE.2, FILE.1, FILE."""
    rotated = []
    number = 1
    while (older := path.with_name(f"{path.name}.{number}")).exists():
        rotated.append(older)
        number += 1
    return [*reversed(rotated), *([path] if path.exists() or not rotated else [])]
