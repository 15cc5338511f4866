"""Traces in, one model out: Jaeger JSON and OTLP-JSON, from files or from Jaeger's query API.

Both formats describe the same spans with different spellings: Jaeger's ``{"data": [...]}``
(microseconds, hex ids, ``references`` CHILD_OF/FOLLOWS_FROM, the kind in a ``span.kind`` tag,
services in ``processes``) and OTLP-JSON ``{"resourceSpans": [...]}`` (nanoseconds as strings,
ids in hex or, from protobuf's ``json_format``, base64, kinds as numbers or enum names), one
document per file or one per line as ``python -m loadtest sink`` writes them. Everything becomes
the project's `Span` (``loadtest.otlp``, which reads the OTLP half), read in integer
microseconds (the resolution Jaeger stores), so that the analyser can account for every
microsecond exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.otlp import KINDS, Span, TraceFormatError, normalise_id, otlp_spans, span_kind

__all__ = [
    "KINDS",
    "Span",
    "Trace",
    "TraceFormatError",
    "document_spans",
    "fetch_jaeger",
    "file_spans",
    "group",
    "jaeger_spans",
    "load_traces",
    "normalise_id",
    "parse_lookback",
    "text_spans",
    "within",
]


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]


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
        kind=span_kind(tags.pop("span.kind", None)),
        start_ns=start * 1000,
        end_ns=(start + int(span.get("duration", 0))) * 1000,
        attributes=tags,
        follows_from=not child_of and bool(follows),
        links=tuple(normalise_id(ref["spanID"], 8) for ref in follows if ref is not parent),
        error=tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR",
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
