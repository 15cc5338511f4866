"""What ``python -m loadtest load`` does: finds the catalogue, sends the load, prints the result.

The command line (what it accepts, and its ``--help``) is `loadtest.load.options`; schedules,
the runner and the recorder are `schedule`, `runner` and `recorder`. `run` takes parsed options
and returns the result `table` prints and ``--json`` writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import aiohttp
from tqdm import tqdm

from loadtest import cli
from loadtest.load.options import parse, parser
from loadtest.load.recorder import Recorder
from loadtest.load.runner import closed_loop, open_loop
from loadtest.load.schedule import (
    Catalogue,
    constant_arrivals,
    parse_ids,
    parse_mix,
    plan,
    poisson_arrivals,
    requests,
    sweep_rates,
)

__all__ = ["discover", "main", "parse", "parser", "run", "table"]

DISCOVERY_PAGE, DISCOVERY_PAGES = 20, 100  # up to 2,000 ids and 100 cursors


async def discover(session: aiohttp.ClientSession, base_url: str) -> Catalogue:
    """Page through ``GET /dramas`` for drama ids and the cursors of its pages."""
    ids: list[int] = []
    cursors: list[str] = []
    cursor: str | None = None
    for _ in range(DISCOVERY_PAGES):
        url = f"{base_url}/dramas?limit={DISCOVERY_PAGE}" + (f"&cursor={cursor}" if cursor else "")
        async with session.get(url, raise_for_status=True) as response:
            page = await response.json()
        ids += [int(item["id"]) for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
        cursors.append(cursor)
    return Catalogue(ids, cursors)


def progress_bar(total: int | None, description: str) -> tqdm[Any]:
    """A bar on stderr when it is a terminal; silent otherwise (logs, CI, pipes)."""
    return tqdm(
        total=total,
        desc=description,
        unit="req",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )


async def run_once(
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    catalogue: Catalogue,
    rate: float,
) -> dict[str, Any]:
    """One open- or closed-loop run; the result as :func:`main` writes it."""
    rng = random.Random(args.seed)
    source = requests(parse_mix(args.mix), catalogue, rng)
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    span = args.warmup + args.duration
    result: dict[str, Any] = {"mode": args.mode}
    if args.mode == "open":
        arrivals: Iterator[float] = (
            poisson_arrivals(rate, span, rng)
            if args.arrivals == "poisson"
            else constant_arrivals(rate, span)
        )
        shots = plan(arrivals, source)
        result |= {
            "arrivals": args.arrivals,
            "intended_requests": sum(1 for shot in shots if shot.at >= args.warmup),
            "max_in_flight": args.max_in_flight,
        }
        with progress_bar(len(shots), f"{rate:g}/s") as bar:
            start = await open_loop(
                session,
                args.url,
                shots,
                warmup=args.warmup,
                timeout=args.timeout,
                max_in_flight=args.max_in_flight,
                recorder=recorder,
                progress=bar.update,
            )
    else:
        result["concurrency"] = args.concurrency
        with progress_bar(None, f"{args.concurrency} users") as bar:
            start = await closed_loop(
                session,
                args.url,
                source,
                concurrency=args.concurrency,
                duration=args.duration,
                warmup=args.warmup,
                timeout=args.timeout,
                recorder=recorder,
                progress=bar.update,
            )
    # From the end of warmup to the last answer, and at least the measured window.
    elapsed = max(loop.time() - start - args.warmup, args.duration)
    summary = recorder.summary()
    result["rate"] = {
        "intended": rate if args.mode == "open" else None,
        "sent": summary["sent"] / args.duration,
        "ok": summary["ok"] / elapsed,
    }
    return result | {"duration_s": args.duration, "warmup_s": args.warmup} | summary


async def sweep(
    session: aiohttp.ClientSession, args: argparse.Namespace, catalogue: Catalogue
) -> dict[str, Any]:
    """Open-loop steps at growing rates until p99 (or the error share) crosses its limit."""
    start, stop, factor = args.sweep
    steps: list[dict[str, Any]] = []
    best: float | None = None
    crossed: dict[str, Any] | None = None
    for rate in sweep_rates(start, stop, factor):
        step = await run_once(session, args, catalogue, rate)
        steps.append(step)
        p99 = step["latency_ms"]["p99"]
        failed = step["requests"] - step["ok"]
        error_share = failed / max(1, step["requests"])
        print(
            f"sweep {rate:g}/s: p99 {p99:.1f} ms, errors {error_share:.1%}",
            file=sys.stderr,
            flush=True,
        )
        if p99 > args.p99_ms or error_share > args.max_error_rate:
            reason = "p99" if p99 > args.p99_ms else "errors"
            crossed = {"rate": rate, "p99_ms": p99, "error_share": error_share, "reason": reason}
            break
        best = rate
    return {
        "mode": "sweep",
        "p99_limit_ms": args.p99_ms,
        "max_error_rate": args.max_error_rate,
        "max_rate_under_limit": best,
        "crossed": crossed,
        "steps": steps,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    limit = args.max_in_flight if args.mode == "open" else args.concurrency
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None),  # each request's deadline is its own
        headers={"baggage": f"synthetic=true,loadtest.run={args.run_id}"},
    )
    async with session:
        catalogue = await discover(session, args.url)
        if args.ids:
            catalogue = Catalogue(parse_ids(args.ids), catalogue.cursors)
        body = await (
            sweep(session, args, catalogue)
            if args.sweep
            else run_once(session, args, catalogue, args.rate)
        )
    head = {"run_id": args.run_id, "target": args.url, "seed": args.seed, "mix": args.mix}
    return head | {"timeout_s": args.timeout} | body


def _row(name: str, s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    errors = s["requests"] - s["ok"] - s["timeouts"] - s["not_started"]
    return (
        f"{name:<8}{s['requests']:>9}{s['ok']:>9}{errors:>7}{s['timeouts']:>9}"
        f"{s['not_started']:>8}{lat['p50']:>9.1f}{lat['p90']:>9.1f}{lat['p99']:>9.1f}"
        f"{lat['p99_9']:>9.1f}{lat['max']:>9.1f}"
    )


def table(result: dict[str, Any]) -> str:
    """A short human summary of one run (the last step of a sweep gets its own lines too)."""
    if result["mode"] == "sweep":
        lines = [f"sweep, p99 limit {result['p99_limit_ms']:g} ms:"]
        lines += [
            f"  {s['rate']['intended']:>8g}/s  p99 {s['latency_ms']['p99']:9.1f} ms  "
            f"ok {s['ok']}/{s['requests']}"
            for s in result["steps"]
        ]
        best, crossed = result["max_rate_under_limit"], result["crossed"]
        lines.append(f"highest rate within the limit: {'none' if best is None else f'{best:g}/s'}")
        if crossed:
            lines.append(f"crossed at {crossed['rate']:g}/s ({crossed['reason']})")
        else:
            lines.append("the limit was not crossed")
        return "\n".join(lines)
    rate = result["rate"]
    how = (
        f"open loop, {result['arrivals']} arrivals at {rate['intended']:g}/s"
        if result["mode"] == "open"
        else f"closed loop, {result['concurrency']} users"
    )
    lines = [
        f"{how}, {result['duration_s']:g} s (+{result['warmup_s']:g} s warmup), "
        f"run {result['run_id']}",
        f"{'':<8}{'requests':>9}{'ok':>9}{'errors':>7}{'timeouts':>9}{'unsent':>8}"
        f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'p99.9 ms':>9}{'max ms':>9}",
    ]
    lines += [_row(name, s) for name, s in result["scenarios"].items()]
    lines.append(_row("total", result))
    intended = f"intended {rate['intended']:g}/s, " if rate["intended"] else ""
    lines.append(
        f"rate: {intended}sent {rate['sent']:.1f}/s, ok {rate['ok']:.1f}/s; "
        f"send lag p99 {result['send_lag_ms']['p99']:.1f} ms"
    )
    if result["errors_by_status"]:
        errors = ", ".join(f"{k}: {n}" for k, n in result["errors_by_status"].items())
        lines.append(f"errors by status: {errors}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.run_id = args.run_id or uuid.uuid4().hex[:12]
    try:
        result = asyncio.run(run(args))
    except (aiohttp.ClientError, ValueError, OSError) as exc:
        return cli.fail("loadtest load", f"{args.url}: {exc}")
    if not _measured(result):
        return cli.fail(
            "loadtest load",
            "no request was sent in the measured window: raise --rate or --duration",
        )
    human: TextIO = sys.stderr if args.json == "-" else sys.stdout
    print(table(result), file=human)
    if args.json:
        with (
            contextlib.nullcontext(sys.stdout)
            if args.json == "-"
            else open(args.json, "w", encoding="utf-8")
        ) as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 0


def _measured(result: dict[str, Any]) -> bool:
    steps = result["steps"] if result["mode"] == "sweep" else [result]
    return bool(steps) and all(step["requests"] > 0 for step in steps)


if __name__ == "__main__":
    sys.exit(main())
