"""The analysis of many traces: percentiles of each category and what sits on the critical path.

Each trace's queue-aware critical path and category breakdown comes from
`loadtest.analysis.critical_path`; a `Report` aggregates them: percentiles of each category, the
share of each ``service:operation`` on the path overall and around p50 and p99, and the single
biggest contributor. ``analyze(load_traces(paths))`` is the entry for code (the end-to-end tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.analysis.categories import CATEGORIES, QUEUE_SIDE, WIRE_SIDE
from loadtest.analysis.critical_path import TraceResult, analyse_trace, root_span
from loadtest.analysis.traces import Trace

__all__ = ["CATEGORIES", "Report", "analyze", "percentile", "select"]

# Traces "around" a percentile q: those within +-min(5, (100 - q) / 2) percentile points of it
# (p50: 45-55, p95: 92.5-97.5, p99: 98.5-99.5), and at least the one nearest to it.
BANDS = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _stats_ms(values_us: Sequence[int]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values_us, 50) / 1000, 3),
        "p95_ms": round(percentile(values_us, 95) / 1000, 3),
        "p99_ms": round(percentile(values_us, 99) / 1000, 3),
        "mean_ms": round(sum(values_us) / len(values_us) / 1000, 3) if values_us else 0.0,
    }


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass(frozen=True)
class Report:
    """The analysis of a set of traces; `to_json` is the ``--json`` document."""

    results: list[TraceResult]

    @property
    def total_us(self) -> int:
        return sum(result.duration_us for result in self.results)

    def band(self, q: float) -> list[TraceResult]:
        """The traces around duration percentile ``q`` (see BANDS)."""
        if not self.results:
            return []
        ordered = sorted(self.results, key=lambda r: (r.duration_us, r.trace_id))
        durations = [r.duration_us for r in ordered]
        half = min(5.0, (100 - q) / 2)
        low, high = percentile(durations, q - half), percentile(durations, q + half)
        inside = [r for r in ordered if low <= r.duration_us <= high]
        if inside:
            return inside
        target = percentile(durations, q)
        return [min(ordered, key=lambda r: abs(r.duration_us - target))]

    def categories_us(self, results: Iterable[TraceResult] | None = None) -> dict[str, int]:
        totals = dict.fromkeys(CATEGORIES, 0)
        for result in self.results if results is None else results:
            for name, us in result.categories.items():
                totals[name] += us
        return totals

    def where_us(self, results: Iterable[TraceResult] | None = None) -> dict[str, int]:
        """Critical-path time of each ``service:operation``, largest first."""
        totals: dict[str, int] = {}
        for result in self.results if results is None else results:
            for step in result.critical_path:
                totals[step.where] = totals.get(step.where, 0) + step.self_us
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))

    def bottleneck(self) -> dict[str, Any] | None:
        """The (category, service:operation) pair holding the most critical-path time."""
        pairs: dict[tuple[str, str], int] = {}
        for result in self.results:
            for step in result.critical_path:
                key = (step.category, step.where)
                pairs[key] = pairs.get(key, 0) + step.self_us
        if not pairs or not self.total_us:
            return None
        (name, where), us = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        service, _, operation = where.partition(":")
        return {
            "category": name,
            "where": where,
            "service": service,
            "operation": operation,
            "share": _share(us, self.total_us),
            "mean_ms": round(us / len(self.results) / 1000, 3),
            "category_share": _share(self.categories_us()[name], self.total_us),
        }

    def sides(self) -> dict[str, dict[str, Any]]:
        """Time in queues against time on the wire, per trace (docs/analysis.md)."""
        total = self.total_us
        sides = {}
        for side, names in (("queue", QUEUE_SIDE), ("wire", WIRE_SIDE)):
            values = [sum(r.categories[name] for name in names) for r in self.results]
            sides[side] = {"categories": list(names)} | _stats_ms(values)
            sides[side]["share"] = _share(sum(values), total)
        return sides

    def _band_json(self, q: float) -> dict[str, Any]:
        band = self.band(q)
        size, total = max(len(band), 1), sum(r.duration_us for r in band)
        return {
            "traces": len(band),
            "duration_ms": round(total / size / 1000, 3),
            "categories_ms": {
                name: round(us / size / 1000, 3) for name, us in self.categories_us(band).items()
            },
            "critical_path": {
                where: _share(us, total) for where, us in self.where_us(band).items()
            },
        }

    def to_json(self, per_trace: bool = True) -> dict[str, Any]:
        n, total = len(self.results), self.total_us
        per_category: dict[str, list[int]] = {name: [] for name in CATEGORIES}
        for result in self.results:
            for name, us in result.categories.items():
                per_category[name].append(us)
        bands = {f"p{q}": self._band_json(q) for q in BANDS}
        critical_path = {
            where: {
                "mean_ms": round(us / n / 1000, 3),
                "share": _share(us, total),
                "p50_share": bands["p50"]["critical_path"].get(where, 0.0),
                "p99_share": bands["p99"]["critical_path"].get(where, 0.0),
            }
            for where, us in self.where_us().items()
        }
        document: dict[str, Any] = {
            "traces": n,
            "duration": _stats_ms([r.duration_us for r in self.results]),
            "categories": {
                name: _stats_ms(values) | {"share": _share(sum(values), total)}
                for name, values in per_category.items()
            },
            "critical_path": critical_path,
            "sides": self.sides(),
            "percentiles": bands,
            "bottleneck": self.bottleneck(),
        }
        if per_trace:
            document["per_trace"] = [result.to_json() for result in self.results]
        return document


def analyze(traces: Iterable[Trace]) -> Report:
    """Analyse every trace that has a root (a trace of parentless-cycle spans has none)."""
    results = [analyse_trace(trace) for trace in traces]
    return Report([result for result in results if result is not None])


def select(traces: Iterable[Trace], service: str | None, operation: str | None) -> list[Trace]:
    """Traces with a span of ``service`` (as Jaeger's search) whose root is ``operation``."""
    chosen = []
    for trace in traces:
        if service and all(span.service != service for span in trace.spans):
            continue
        if operation:
            root = root_span(trace)
            if root is None or root.name != operation:
                continue
        chosen.append(trace)
    return chosen
