"""``python -m loadtest analyze``: where the latency goes, over many traces.

Reads traces from files (Jaeger JSON or OTLP-JSON, the sink's JSON lines) or from Jaeger's query
API, computes each trace's queue-aware critical path and category breakdown
(`loadtest.analysis.critical_path`), and aggregates them (`loadtest.analysis.breakdown`):
percentiles of each category, the share of each ``service:operation`` on the path overall and
around p50 and p99, and the single biggest contributor. Prints a table, or ``--json``;
``--plot`` and ``--html`` draw it (`loadtest.analysis.report`).

For code (the end-to-end tests): ``analyze(load_traces(paths))`` returns a `Report`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from loadtest import cli
from loadtest.analysis import report as render
from loadtest.analysis import runs
from loadtest.analysis.breakdown import CATEGORIES, Report, analyze, percentile, select
from loadtest.analysis.traces import (
    Trace,
    TraceFormatError,
    fetch_jaeger,
    load_traces,
    parse_lookback,
)
from loadtest.otlp import rotated_set

__all__ = ["CATEGORIES", "Report", "analyze", "load_traces", "main", "percentile", "select"]


def _trace_url(text: str) -> str:
    try:
        text.format(trace_id="0" * 32)
    except (KeyError, IndexError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be a URL with {{trace_id}} and no other {{field}}, not {text!r}"
        ) from None
    if "{trace_id}" not in text:
        raise argparse.ArgumentTypeError(f"must contain {{trace_id}}, not {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = cli.Parser("python -m loadtest analyze", __doc__.split("\n\nFor code")[0])
    source = parser.add_argument_group("traces (files, Jaeger, or both)")
    source.add_argument(
        "--input",
        action="append",
        default=[],
        type=cli.existing_file,
        metavar="FILE",
        help="Jaeger JSON or OTLP-JSON (lines); repeatable. The sink's rotated files "
        "(FILE.1, FILE.2...) are read with FILE",
    )
    source.add_argument(
        "--jaeger", type=cli.http_url, metavar="URL", help="Jaeger query, e.g. http://jaeger:16686"
    )
    source.add_argument(
        "--lookback",
        default="1h",
        type=cli.validated(parse_lookback),
        help="with --jaeger: 30m, 1h, 2d",
    )
    source.add_argument(
        "--limit", type=cli.integer(1, 100_000), default=1000, help="with --jaeger: most traces"
    )
    source.add_argument(
        "--flush-wait",
        type=cli.number(0, 120),
        default=6.0,
        metavar="SECONDS",
        help="with --input: if the newest span ended less than this long ago, wait until it has "
        "and read again, for the spans still being exported (every 5 s by default); 0: never",
    )
    chosen = parser.add_argument_group("which traces")
    chosen.add_argument("--service", type=cli.name, help="traces with a span of this service")
    chosen.add_argument("--operation", help="traces whose root span has this name")
    chosen.add_argument(
        "--run", type=cli.name, metavar="RUN_ID", help="traces of this load run (load --run-id)"
    )
    chosen.add_argument(
        "--baseline",
        type=cli.name,
        metavar="RUN_ID",
        help="compare with this load run: per category, the change at p50/p95/p99",
    )
    chosen.add_argument(
        "--since",
        metavar="TIME",
        help="traces started at or after: 2026-01-31T12:00:00Z, or 5m (ago)",
    )
    chosen.add_argument("--until", metavar="TIME", help="traces started at or before (as --since)")
    chosen.add_argument(
        "--last",
        type=cli.validated(parse_lookback),
        metavar="DURATION",
        help="traces started in the last 30s, 5m, 1h (instead of --since/--until)",
    )
    chosen.add_argument(
        "--min-traces", type=cli.integer(1, 10**9), default=1, help="fail with fewer traces"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    out.add_argument("--no-per-trace", action="store_true", help="leave per_trace out of --json")
    out.add_argument("--plot", type=cli.new_file, metavar="FILE.png", help="draw the breakdown")
    out.add_argument("--html", type=cli.new_file, metavar="FILE.html", help="one-page report")
    out.add_argument(
        "--trace-url",
        type=_trace_url,
        metavar="TEMPLATE",
        help="link of a trace in the HTML report, e.g. 'http://127.0.0.1:8080/#/trace/{trace_id}' "
        "(default with --jaeger: its UI's trace page; otherwise no links)",
    )
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (a bad one exits 2 with one line); ``window``: since, until."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.input and not args.jaeger:
        parser.error("give --input FILE (repeatable) or --jaeger URL")
    if args.jaeger and not args.service:
        parser.error("argument --jaeger: needs --service (Jaeger searches one service at a time)")
    if args.baseline and args.baseline == args.run:
        parser.error("argument --baseline: names the same run as --run")
    args.window = _window(parser, args)
    return args


@dataclass(frozen=True)
class _Selection:
    """What the command line chose, and what it found on the way."""

    report: Report
    baseline: Report | None
    incomplete: int
    extra: dict[str, Any]


def _window(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[dt.datetime | None, dt.datetime | None]:

    now = dt.datetime.now(dt.UTC)
    if args.last and (args.since or args.until):
        parser.error("argument --last: give --last, or --since/--until, not both")
    if args.last:
        return now - parse_lookback(args.last), None
    try:
        since = runs.parse_instant(args.since, now) if args.since else None
        until = runs.parse_instant(args.until, now) if args.until else None
    except ValueError as error:
        parser.error(f"argument --since/--until: {error}")
    if since and until and since > until:
        parser.error("argument --since: is after --until")
    return since, until


def _load(args: argparse.Namespace) -> list[Trace]:
    files = [path for given in args.input for path in rotated_set(given)]
    traces = load_traces(files)
    if args.jaeger:
        lookback = parse_lookback(args.lookback)
        traces += asyncio.run(
            fetch_jaeger(args.jaeger, args.service, lookback, args.limit, args.operation)
        )
    return traces


def _settled(args: argparse.Namespace, traces: list[Trace]) -> list[Trace]:
    """Read the files again once their newest span is ``--flush-wait`` old: the services export
    spans in batches (every 5 s by default), so a trace that just ended may be in none yet, or
    in part."""

    if not args.flush_wait or not args.input:
        return traces
    age = time.time() - runs.newest_end_us(traces) / 1e6
    if age >= args.flush_wait:
        return traces
    print(
        f"analyze: the newest span ended {age:.1f} s ago; waiting {args.flush_wait - age:.1f} s "
        "for spans still being exported (--flush-wait 0: do not wait)",
        file=sys.stderr,
        flush=True,
    )
    time.sleep(args.flush_wait - age)
    return _load(args)


def _select(args: argparse.Namespace, traces: list[Trace], window: Any) -> _Selection:

    chosen = runs.in_window(select(traces, args.service, args.operation), *window)
    broken = sum(runs.incomplete(trace) for trace in chosen)
    baseline = analyze(runs.of_run(chosen, args.baseline)) if args.baseline else None
    if args.run:
        current = runs.of_run(chosen, args.run)
    elif args.baseline:
        current = [trace for trace in chosen if args.baseline not in runs.runs_of(trace)]
    else:
        current = chosen
    report = analyze(current)
    since, until = window
    extra: dict[str, Any] = {
        "selection": {
            "run": args.run,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "incomplete_traces": broken,
        },
        "slowest": runs.slowest(report),
    }
    if baseline is not None:
        extra["baseline"] = runs.compare(report, baseline, args.run, args.baseline)
    if args.trace_url or args.jaeger:
        extra["trace_url"] = args.trace_url or f"{args.jaeger}/trace/{{trace_id}}"
    return _Selection(report, baseline, broken, extra)


def main(argv: list[str] | None = None) -> int:

    args = parse(argv)
    window = args.window
    try:
        traces = _settled(args, _load(args))
    except (OSError, TraceFormatError, ValueError, aiohttp.ClientError) as error:
        return cli.fail("analyze", str(error))
    found = _select(args, traces, window)
    report = found.report
    if found.incomplete:
        print(
            f"analyze: {found.incomplete} traces look incomplete (a parent span or the root "
            "missing: still being exported, sampled out, or in a rotated file deleted since)",
            file=sys.stderr,
        )
    if len(report.results) < args.min_traces:
        what = f" of run {args.run}" if args.run else ""
        return cli.fail(
            "analyze",
            f"{len(report.results)} traces{what}, fewer than --min-traces {args.min_traces}",
        )
    if found.baseline is not None and not found.baseline.results:
        return cli.fail("analyze", f"no traces of the baseline run {args.baseline}")
    try:
        render.write(report, args.plot, args.html, found.extra)
    except ModuleNotFoundError as error:
        return cli.fail(
            "analyze",
            f"--plot and --html need {error.name}: pip install 'drama-streaming[analysis]'",
        )
    if args.json:
        document = report.to_json(per_trace=not args.no_per_trace) | found.extra
        print(json.dumps(document, indent=2))
    else:
        sections = [render.table(report)]
        if "baseline" in found.extra:
            sections.append(runs.change_table(found.extra["baseline"]))
        print("\n\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
