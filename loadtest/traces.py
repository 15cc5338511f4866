"""Traces in, one model out: Jaeger JSON and OTLP-JSON, from files or from Jaeger's query API.

Both formats describe the same spans with different spellings: Jaeger's ``{"data": [...]}``
(microseconds, hex ids, ``references`` CHILD_OF/FOLLOWS_FROM, the kind in a ``span.kind`` tag,
services in ``processes``) and OTLP-JSON ``{"resourceSpans": [...]}`` (nanoseconds as strings,
ids in hex or, from protobuf's ``json_format``, base64, kinds as numbers or enum names), one
document per file or one per line as ``python -m loadtest sink`` writes them. Everything becomes
`Span` with times in integer microseconds (the resolution Jaeger stores), so that the analyser
can account for every microsecond exactly.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_HEX = frozenset(string.hexdigits)


@dataclass(frozen=True)
class Span:
    """One span, format-free. ``parent_id`` is "" for a root; times are integer microseconds."""

    trace_id: str
    span_id: str
    parent_id: str
    service: str
    name: str
    kind: str  # one of KINDS
    start_us: int
    end_us: int
    attributes: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    follows_from: bool = False  # the parent reference is FOLLOWS_FROM: the parent did not wait
    # Span ids this span links to (OTLP links, Jaeger's other FOLLOWS_FROM references): a
    # consumer linked to its producer instead of parented to it (docs/analysis.md, rule 2).
    links: tuple[str, ...] = field(default=(), hash=False, compare=False)


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]


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


def _kind(raw: object) -> str:
    if isinstance(raw, int) and 0 <= raw < len(KINDS):
        return KINDS[raw]
    if isinstance(raw, str):
        name = raw.upper().removeprefix("SPAN_KIND_")
        if name in KINDS:
            return name
        if name.isdigit():
            return _kind(int(name))
    if raw is None:
        return "UNSPECIFIED"
    raise TraceFormatError(f"unknown span kind {raw!r}")


# --- OTLP-JSON --------------------------------------------------------------------------------


def _any_value(value: Mapping[str, Any]) -> Any:
    for key, raw in value.items():
        if key == "intValue":
            return int(raw)  # int64 travels as a string in OTLP-JSON
        if key == "arrayValue":
            return [_any_value(item) for item in raw.get("values", [])]
        if key == "kvlistValue":
            return _otlp_attributes(raw.get("values", []))
        return raw
    return None


def _otlp_attributes(pairs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: _any_value(pair.get("value", {})) for pair in pairs}


def otlp_spans(document: Mapping[str, Any]) -> Iterator[Span]:
    """The spans of one OTLP ``ExportTraceServiceRequest``/``TracesData`` in JSON form."""
    for resource_spans in document.get("resourceSpans", []):
        resource = _otlp_attributes(resource_spans.get("resource", {}).get("attributes", []))
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
                    kind=_kind(span.get("kind")),
                    start_us=int(span["startTimeUnixNano"]) // 1000,
                    end_us=int(span["endTimeUnixNano"]) // 1000,
                    attributes=_otlp_attributes(span.get("attributes", [])),
                    links=tuple(
                        normalise_id(link["spanId"], 8)
                        for link in span.get("links") or []
                        if link.get("spanId")
                    ),
                )


# --- Jaeger JSON ------------------------------------------------------------------------------


def _jaeger_span(span: Mapping[str, Any], processes: Mapping[str, Any]) -> Span:
    tags = {tag["key"]: tag.get("value") for tag in span.get("tags", [])}
    references = span.get("references") or []
    child_of = [ref for ref in references if ref.get("refType", "CHILD_OF") == "CHILD_OF"]
    follows = [ref for ref in references if ref.get("refType") == "FOLLOWS_FROM"]
    parent = child_of[0] if child_of else (follows[0] if follows else None)
    parent_id = parent["spanID"] if parent else span.get("parentSpanID", "")
    process = processes.get(span.get("processID", ""), span.get("process", {}))
    start = int(span["startTime"])
    return Span(
        trace_id=normalise_id(span["traceID"], 16),
        span_id=normalise_id(span["spanID"], 8),
        parent_id=normalise_id(parent_id, 8),
        service=str(process.get("serviceName", "unknown")),
        name=span.get("operationName", ""),
        kind=_kind(tags.pop("span.kind", None)),
        start_us=start,
        end_us=start + int(span.get("duration", 0)),
        attributes=tags,
        follows_from=not child_of and bool(follows),
        links=tuple(normalise_id(ref["spanID"], 8) for ref in follows if ref is not parent),
    )


def jaeger_spans(document: Mapping[str, Any]) -> Iterator[Span]:
    """The spans of Jaeger's ``/api/traces`` answer (or the UI's JSON download)."""
    for trace in document.get("data") or []:
        processes = trace.get("processes", {})
        for span in trace.get("spans", []):
            yield _jaeger_span(span, processes)


# --- documents, files, grouping ---------------------------------------------------------------


def document_spans(document: Any) -> Iterator[Span]:
    """Spans of any supported document: Jaeger, OTLP, or Jaeger v3's ``{"result": OTLP}``."""
    if not isinstance(document, Mapping):
        raise TraceFormatError("a trace document is a JSON object")
    if "result" in document:
        document = document["result"]
    if "resourceSpans" in document:
        return otlp_spans(document)
    if "data" in document:
        return jaeger_spans(document)
    raise TraceFormatError("expected Jaeger JSON {'data': ...} or OTLP-JSON {'resourceSpans': ...}")


def text_spans(text: str, source: str = "<input>") -> Iterator[Span]:
    """One JSON document, or JSON lines of them (the sink's output, a streamed answer)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    document = json.loads(line)
                except json.JSONDecodeError as error:
                    raise TraceFormatError(f"{source}:{number}: {error}") from None
                yield from document_spans(document)
    else:
        yield from document_spans(document)


def file_spans(path: Path) -> Iterator[Span]:
    return text_spans(path.read_text(), str(path))


def group(spans: Iterable[Span]) -> list[Trace]:
    """Spans into traces, in order of first appearance; a span seen twice is kept once."""
    by_trace: dict[str, dict[str, Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, {}).setdefault(span.span_id, span)
    return [Trace(trace_id, tuple(found.values())) for trace_id, found in by_trace.items()]


def within(traces: Iterable[Trace], window: tuple[int, int]) -> list[Trace]:
    """The traces whose earliest span started in ``window`` (microseconds, both ends included)."""
    return [t for t in traces if window[0] <= min(s.start_us for s in t.spans) <= window[1]]


def rotated_set(path: Path) -> list[Path]:
    """``path`` and the files the sink rotated it into, oldest first: ..., FILE.2, FILE.1, FILE."""
    rotated = []
    number = 1
    while (older := path.with_name(f"{path.name}.{number}")).exists():
        rotated.append(older)
        number += 1
    return [*reversed(rotated), *([path] if path.exists() or not rotated else [])]


def load_traces(paths: Iterable[Path | str]) -> list[Trace]:
    """Every trace in the files; a trace split across files (or sink batches) is joined."""
    return group(span for path in paths for span in file_spans(Path(path)))


# --- Jaeger's query API -----------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m|h|d)$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_lookback(text: str) -> dt.timedelta:
    """``30m``, ``1h``, ``2d`` (the units Jaeger's UI uses) as a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"lookback {text!r}: expected a number and one of {', '.join(_UNIT_S)}")
    return dt.timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])


async def fetch_jaeger(
    url: str, service: str, lookback: dt.timedelta, limit: int, operation: str | None = None
) -> list[Trace]:
    """Recent traces of ``service``: Jaeger v2's ``/api/v3/traces``, else the v1 ``/api/traces``.

    v3 answers OTLP-JSON (``{"result": {"resourceSpans": ...}}``); a Jaeger without it (v1, or
    a v2 with the v3 HTTP API off) answers 404, and then the older JSON API is asked.
    """
    end = dt.datetime.now(dt.UTC)
    start = end - lookback
    base = url.rstrip("/")
    v3 = {
        "query.service_name": service,
        "query.start_time_min": start.isoformat().replace("+00:00", "Z"),
        "query.start_time_max": end.isoformat().replace("+00:00", "Z"),
        "query.search_depth": str(limit),
    }
    v1 = {"service": service, "lookback": "custom", "limit": str(limit)}
    v1 |= {"start": str(int(start.timestamp() * 1e6)), "end": str(int(end.timestamp() * 1e6))}
    if operation:
        v3["query.operation_name"] = operation
        v1["operation"] = operation
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, raise_for_status=False) as session:
        async with session.get(f"{base}/api/v3/traces", params=v3) as response:
            if response.status == 200:
                return group(text_spans(await response.text(), response.url.human_repr()))
            if response.status != 404:
                response.raise_for_status()
        async with session.get(f"{base}/api/traces", params=v1) as response:
            response.raise_for_status()
            return group(text_spans(await response.text(), response.url.human_repr()))
