"""What a load run saw: latency histograms (HdrHistogram), outcomes, and how late requests left.

Every request of the measured window ends in exactly one outcome and one histogram entry:

- an HTTP status (``ok`` when 2xx, else counted under ``errors_by_status``);
- ``timeout``: no answer within ``--timeout`` of its intended send time;
- ``not_started``: it waited for a free connection (``--max-in-flight``) until its deadline
  passed, so it never left this process;
- ``connection``: the connection failed (refused, reset).

Latencies are recorded for all of them, failures included, at the time they took to end: a
request that timed out after 10 s is a 10 s request to the user who waited for it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3  # 1 us .. 60 s, 3 significant digits
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
TIMEOUT, NOT_STARTED, CONNECTION = "timeout", "not_started", "connection"


def histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record(hist: HdrHistogram, seconds: float) -> None:
    """Record ``seconds`` in microseconds, clamped into the histogram's range (never lost)."""
    hist.record_value(min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6))))


def latency_summary(hist: HdrHistogram) -> dict[str, float]:
    """Percentiles, max and mean in milliseconds (zeros when nothing was recorded)."""
    summary = {name: hist.get_value_at_percentile(q) / 1e3 for name, q in PERCENTILES.items()}
    summary["max"] = hist.get_max_value() / 1e3
    summary["mean"] = hist.get_mean_value() / 1e3 if hist.get_total_count() else 0.0
    return summary


@dataclass
class Stats:
    """Outcomes and latencies of one scenario, or of all requests."""

    latency: HdrHistogram = field(default_factory=histogram)
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: int | str, seconds: float) -> None:
        record(self.latency, seconds)
        self.outcomes[str(outcome)] += 1

    def summary(self) -> dict[str, Any]:
        statuses = {k: n for k, n in self.outcomes.items() if k.isdigit()}
        return {
            "requests": sum(self.outcomes.values()),
            "ok": sum(n for k, n in statuses.items() if k.startswith("2")),
            "errors_by_status": {k: n for k, n in sorted(statuses.items()) if k[0] != "2"},
            "timeouts": self.outcomes[TIMEOUT],
            "not_started": self.outcomes[NOT_STARTED],
            "connection_errors": self.outcomes[CONNECTION],
            "latency_ms": latency_summary(self.latency),
        }


@dataclass
class Recorder:
    """The totals, one :class:`Stats` per scenario, and the send lag of the requests that left."""

    total: Stats = field(default_factory=Stats)
    scenarios: dict[str, Stats] = field(default_factory=dict)
    send_lag: HdrHistogram = field(default_factory=histogram)
    sent: int = 0

    def add(self, scenario: str, outcome: int | str, seconds: float) -> None:
        self.total.add(outcome, seconds)
        self.scenarios.setdefault(scenario, Stats()).add(outcome, seconds)

    def left(self, lag_seconds: float) -> None:
        """A request left this process ``lag_seconds`` after its intended send time."""
        self.sent += 1
        record(self.send_lag, lag_seconds)

    def summary(self) -> dict[str, Any]:
        return {
            **self.total.summary(),
            "sent": self.sent,
            "send_lag_ms": latency_summary(self.send_lag),
            "scenarios": {name: s.summary() for name, s in sorted(self.scenarios.items())},
        }
