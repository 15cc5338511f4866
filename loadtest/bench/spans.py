"""Span making micro benchmark: the SDK's spans against `broker.telemetry.spans`' lean ones.

What making the spans of one ``GET /dramas/{id}`` costs drama-service's thread (7 spans shaped
like its own: ``loadtest.bench.export.make_request``), with the SDK's ``TracerProvider`` and
with :class:`broker.telemetry.spans.LeanTracerProvider`, each sampling everything and ending
its spans into a batch processor whose exporter drops them (exporting is
``loadtest.bench.export``'s to measure). CPU µs a request and a span, medians of alternating
rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from broker.telemetry import LeanTracerProvider
from loadtest.bench.export import make_request

SPANS_A_REQUEST = 7
PROVIDERS: dict[str, type[TracerProvider]] = {"sdk": TracerProvider, "lean": LeanTracerProvider}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def measure(rounds: int, requests: int) -> dict[str, list[float]]:
    """Per-round samples in CPU µs a request, for each provider."""
    tracers = {}
    for name, kind in PROVIDERS.items():
        provider = kind(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=8 * requests))
        tracers[name] = (provider, provider.get_tracer("drama_streaming.broker", "0.1.0"))
    samples: dict[str, list[float]] = {name: [] for name in tracers}
    for n in range(rounds + 1):
        for name in list(tracers) if n % 2 == 0 else list(reversed(tracers)):
            provider, tracer = tracers[name]
            provider.force_flush()  # the last round's spans go before this one is timed
            start = time.thread_time_ns()
            for i in range(requests):
                make_request(tracer, i)
            if n:  # round 0 warms up
                samples[name].append((time.thread_time_ns() - start) / 1e3 / requests)
    for provider, _ in tracers.values():
        provider.shutdown()
    return samples


def report(samples: dict[str, list[float]]) -> str:
    sdk, lean = (statistics.median(samples[name]) for name in PROVIDERS)
    return "\n".join(
        [
            f"{'CPU µs to make the spans':<28}{'sdk':>8}{'lean':>8}{'ratio':>8}",
            f"{'a request (7 spans)':<28}{sdk:>8.1f}{lean:>8.1f}{sdk / lean:>7.2f}x",
            f"{'a span':<28}{sdk / SPANS_A_REQUEST:>8.1f}{lean / SPANS_A_REQUEST:>8.1f}",
            f"(this thread's CPU time, medians of {len(samples['sdk'])} alternating rounds)",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench.spans", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=2000, help="requests a round")
    args = parser.parse_args(argv)
    print(report(measure(args.rounds, args.requests)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
