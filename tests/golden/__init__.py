"""Golden traces with known answers, and writers for both of Jaeger's formats.

Each case is a list of `G` spans (times in microseconds from the trace's start) and the answer
worked out by hand from the rules in docs/analysis.md: the critical path span by span, in order
of first appearance on it, and every category total. The writers turn a case into Jaeger JSON
(``{"data": ...}``) or OTLP-JSON (ids hex or base64, kinds as numbers or names).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from loadtest.analysis.reshape import synthetic_id

T0_US = 1_764_000_000_000_000  # an epoch in microseconds, for absolute times
KIND_NUMBERS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}


@dataclass(frozen=True)
class G:
    """A golden span: ``id`` and ``parent`` are short names, made into hex ids by `hex_id`."""

    id: str
    parent: str
    service: str
    kind: str
    name: str
    start: int
    end: int
    attributes: dict[str, Any] = field(default_factory=dict)
    follows_from: bool = False
    links: tuple[str, ...] = ()  # short names of linked spans (OTLP links, Jaeger FOLLOWS_FROM)


@dataclass(frozen=True)
class Case:
    spans: list[G]
    path: list[tuple[str, int]]  # (span id, self_us) in order of first appearance
    categories: dict[str, int]  # the categories that are not zero
    orphans: int = 0
    dropped: int = 0
    not_blocking: int = 0
    trace_id: str = "0af7651916cd43dd8448eb211c80319c"

    @property
    def duration(self) -> int:
        return sum(self_us for _, self_us in self.path)


def hex_id(name: str) -> str:
    """A short span name as a 16-digit hex id ("" stays "": no parent).

    ``"B/call"`` names the span the analyser adds for span B (`synthetic_id`).
    """
    if "/" in name:
        base, role = name.split("/", 1)
        return synthetic_id(hex_id(base), role)
    return name.encode().hex().rjust(16, "0")[-16:] if name else ""


def _jaeger_value(value: Any) -> dict[str, Any]:
    kinds = {bool: "bool", int: "int64", float: "float64", str: "string"}
    return {"type": kinds[type(value)], "value": value}


def jaeger(case: Case) -> dict[str, Any]:
    """Jaeger's ``/api/traces`` answer: references, processes, ``span.kind`` tags."""
    services = sorted({span.service for span in case.spans})
    process_ids = {service: f"p{i}" for i, service in enumerate(services, 1)}
    spans: list[dict[str, Any]] = []
    for span in case.spans:
        references = []
        if span.parent:
            references.append(
                {
                    "refType": "FOLLOWS_FROM" if span.follows_from else "CHILD_OF",
                    "traceID": case.trace_id,
                    "spanID": hex_id(span.parent),
                }
            )
        # Jaeger shows OTLP links as FOLLOWS_FROM references after the parent's.
        references += [
            {"refType": "FOLLOWS_FROM", "traceID": case.trace_id, "spanID": hex_id(link)}
            for link in span.links
        ]
        tags = [{"key": "span.kind", **_jaeger_value(span.kind.lower())}]
        tags += [{"key": key, **_jaeger_value(value)} for key, value in span.attributes.items()]
        spans.append(
            {
                "traceID": case.trace_id,
                "spanID": hex_id(span.id),
                "operationName": span.name,
                "references": references,
                "startTime": T0_US + span.start,
                "duration": span.end - span.start,
                "tags": tags,
                "logs": [],
                "processID": process_ids[span.service],
                "warnings": None,
            }
        )
    processes = {pid: {"serviceName": service, "tags": []} for service, pid in process_ids.items()}
    return {"data": [{"traceID": case.trace_id, "spans": spans, "processes": processes}]}


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def otlp(case: Case, ids: str = "hex", kinds: str = "number") -> dict[str, Any]:
    """OTLP-JSON; ids ``hex`` or ``base64``, kinds ``number`` or ``name``; nanosecond times.

    The times carry sub-microsecond nanoseconds, which the reader must drop, not round.
    """

    def encode(hex_value: str) -> str:
        if ids == "hex" or not hex_value:
            return hex_value
        return base64.b64encode(bytes.fromhex(hex_value)).decode()

    resources = []
    for service in sorted({span.service for span in case.spans}):
        spans: list[dict[str, Any]] = [
            {
                "traceId": encode(case.trace_id),
                "spanId": encode(hex_id(span.id)),
                "parentSpanId": encode(hex_id(span.parent)),
                "name": span.name,
                "kind": KIND_NUMBERS[span.kind] if kinds == "number" else f"SPAN_KIND_{span.kind}",
                "startTimeUnixNano": str((T0_US + span.start) * 1000 + 400),
                "endTimeUnixNano": str((T0_US + span.end) * 1000 + 999),
                "attributes": [
                    {"key": key, "value": _otlp_value(value)}
                    for key, value in span.attributes.items()
                ],
                "status": {},
                **(
                    {
                        "links": [
                            {"traceId": encode(case.trace_id), "spanId": encode(hex_id(link))}
                            for link in span.links
                        ]
                    }
                    if span.links
                    else {}
                ),
            }
            for span in case.spans
            if span.service == service
        ]
        resources.append(
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "golden"}, "spans": spans}],
            }
        )
    return {"resourceSpans": resources}
