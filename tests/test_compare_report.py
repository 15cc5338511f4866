"""``make compare``'s report: the queue path against the HTTP path, and queue against wire."""

from __future__ import annotations

from typing import Any

from loadtest.analysis.breakdown import analyze
from loadtest.analysis.traces import document_spans, group
from loadtest.bench.compare import CATEGORIES, report
from tests.golden import jaeger
from tests.golden.cases import HTTP, OURS


def analysed(case: Any) -> dict[str, Any]:
    document = analyze(group(document_spans(jaeger(case)))).to_json(per_trace=False)
    return {
        "traces": document["traces"],
        "categories": {c: document["categories"][c] for c in CATEGORIES},
        "sides": document["sides"],
        "bottleneck": document["bottleneck"],
    }


def test_the_report_sets_queue_against_wire_for_each_path() -> None:
    runs = [
        {
            "rate": 20.0,
            "transport": transport,
            "sent_per_s": 20.0,
            "p50_ms": 1.0,
            "p99_ms": 2.0,
            "cpu_us": {"total": 100.0},
            "analysis": analysed(case),
        }
        for transport, case in (("amqp", OURS), ("http", HTTP))
    ]
    text = report({"runs": runs})
    assert "queue = queue_wait; wire = transit + broker + reply_wait + network" in text
    # OURS: 2.55 ms in queues, 0.55 broker + 2.0 reply wait on the wire; HTTP: 2.3 ms network.
    assert "    20 amqp       2.550      2.550  10.6%      2.550      2.550  10.6%" in text
    assert "    20 http       0.000      0.000   0.0%      2.300      2.300  23.0%" in text
