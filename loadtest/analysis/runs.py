"""Which traces the analyser looks at: one load run, a time window, and a baseline run beside it.

``python -m loadtest load`` sends ``baggage: loadtest.run=<id>`` with every request and
drama-service writes it on its SERVER span as the ``loadtest.run`` attribute, so a trace belongs
to the runs named on its spans. A window keeps the traces whose first span started in it.

A comparison puts two selections side by side: per category, the change at p50, p95 and p99,
and for each figure the trace nearest to it in each selection (the traces behind it).

Traces still being exported when they are read look broken: a span whose parent is missing, no
root at all, or a request sent that nobody received. :func:`incomplete` counts them, so that the
report can say so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from loadtest.analysis.breakdown import Report, percentile
from loadtest.analysis.traces import Trace, parse_lookback

RUN_ATTRIBUTE = "loadtest.run"
QUANTILES = (50, 95, 99)


def runs_of(trace: Trace) -> set[str]:
    """The load runs a trace belongs to (normally none or one)."""
    return {
        str(span.attributes[RUN_ATTRIBUTE])
        for span in trace.spans
        if span.attributes.get(RUN_ATTRIBUTE) is not None
    }


def of_run(traces: Iterable[Trace], run: str) -> list[Trace]:
    return [trace for trace in traces if run in runs_of(trace)]


def parse_instant(text: str, now: dt.datetime) -> dt.datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration before ``now`` (``5m``)."""
    try:
        return now - parse_lookback(text)
    except ValueError:
        pass
    try:
        instant = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a time (2026-01-31T12:00:00Z) nor a duration ago (30s, 5m, 1h)"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def _us(instant: dt.datetime) -> int:
    return int(instant.timestamp() * 1_000_000)


def in_window(
    traces: Iterable[Trace], since: dt.datetime | None, until: dt.datetime | None
) -> list[Trace]:
    """The traces whose first span started at or after ``since`` and at or before ``until``."""
    low = _us(since) if since else None
    high = _us(until) if until else None
    chosen = []
    for trace in traces:
        start = min(span.start_us for span in trace.spans)
        if (low is None or start >= low) and (high is None or start <= high):
            chosen.append(trace)
    return chosen


def incomplete(trace: Trace) -> bool:
    """Spans missing: no root, a parent that is not in the trace, or a message sent (a PRODUCER
    span) that no span says was received: the consumer's spans are not (yet) there."""
    ids = {span.span_id for span in trace.spans}
    parents = {span.parent_id for span in trace.spans}
    return (
        "" not in parents
        or any(parent and parent not in ids for parent in parents)
        or any(span.kind == "PRODUCER" and span.span_id not in parents for span in trace.spans)
    )


def newest_end_us(traces: Iterable[Trace]) -> int:
    return max((span.end_us for trace in traces for span in trace.spans), default=0)


def _nearest(values: Sequence[tuple[int, str]], q: float) -> str | None:
    """The trace whose value is nearest the ``q`` percentile of ``values``."""
    if not values:
        return None
    target = percentile([value for value, _ in values], q)
    return min(values, key=lambda item: (abs(item[0] - target), item[1]))[1]


def _figures(values: Sequence[tuple[int, str]], base: Sequence[tuple[int, str]]) -> dict[str, Any]:
    figures = {}
    for q in QUANTILES:
        now_ms = percentile([v for v, _ in values], q) / 1000
        base_ms = percentile([v for v, _ in base], q) / 1000
        figures[f"p{q}"] = {
            "baseline_ms": round(base_ms, 3),
            "ms": round(now_ms, 3),
            "change_ms": round(now_ms - base_ms, 3),
            "baseline_trace": _nearest(base, q),
            "trace": _nearest(values, q),
        }
    return figures


def compare(report: Report, baseline: Report, run: str | None, baseline_run: str) -> dict[str, Any]:
    """The change from ``baseline`` to ``report``: duration and each category at p50/p95/p99."""
    names = list(dict.fromkeys([*report.categories_us(), *baseline.categories_us()]))

    def per(which: Report, name: str | None) -> list[tuple[int, str]]:
        return [
            (r.duration_us if name is None else r.categories.get(name, 0), r.trace_id)
            for r in which.results
        ]

    return {
        "baseline_run": baseline_run,
        "run": run,
        "baseline_traces": len(baseline.results),
        "traces": len(report.results),
        "duration": _figures(per(report, None), per(baseline, None)),
        "categories": {name: _figures(per(report, name), per(baseline, name)) for name in names},
    }


def slowest(report: Report, count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` longest traces: id, root, duration and the category holding most of it."""
    ordered = sorted(report.results, key=lambda r: (-r.duration_us, r.trace_id))[:count]
    return [
        {
            "trace_id": r.trace_id,
            "root": f"{r.root.service}:{r.root.name}",
            "duration_ms": r.duration_us / 1000,
            "top_category": max(r.categories.items(), key=lambda item: item[1])[0],
        }
        for r in ordered
    ]


def change_table(comparison: dict[str, Any]) -> str:
    """The comparison for a terminal: one row per category, baseline -> now (change) per q."""
    head = ["", *(f"p{q} ms (change)" for q in QUANTILES)]
    rows = []
    for name, figures in [("duration", comparison["duration"]), *comparison["categories"].items()]:
        cells = [
            f"{f['baseline_ms']:.3f} -> {f['ms']:.3f} ({f['change_ms']:+.3f})"
            for f in (figures[f"p{q}"] for q in QUANTILES)
        ]
        rows.append([name, *cells])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        f"change from run {comparison['baseline_run']} ({comparison['baseline_traces']} traces) "
        f"to {comparison['run'] or 'the selection'} ({comparison['traces']} traces):"
    ]
    for row in [head, *rows]:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)
