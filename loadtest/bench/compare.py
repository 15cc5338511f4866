"""``make compare``: the same request through the queue and through the network, side by side.

One local stack whose workers serve their methods both ways (they consume their queues and
answer ``POST /rpc/{method}``), and two drama-services in front of them: one calling over AMQP,
one over HTTP. At each arrival rate, alternating which goes first, the open-loop load generator
(``python -m loadtest load``, constant arrivals, latency from the intended send time) drives
``GET /dramas/{id}`` at one drama-service, while the CPU time of every process is metered from
/proc. Every request is traced into the stack's OTLP sink; after the runs the analyser splits
each run's traces into categories (queue wait, reply wait, broker, network, app, db, s3...).

Prints one table (latency p50/p99, CPU per request by process, the analyser's breakdown and
bottleneck, for each rate and transport) and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from loadtest import cli
from loadtest.analysis.breakdown import analyze, select
from loadtest.analysis.traces import Trace, load_traces, within
from loadtest.bench.measure import broker_pid, cpu_us
from loadtest.devstack.config import StackConfig, StackError, vhost
from loadtest.devstack.stack import Stack

TRANSPORTS = ("amqp", "http")
CATEGORIES = ("app", "db", "s3", "queue_wait", "transit", "reply_wait", "broker", "network")
DETAIL = "GET /dramas/{id}"
WARMUP_S = 1  # seconds the load generator sends before it measures


async def load(url: str, rate: float, seconds: float, out: Path) -> dict[str, Any]:
    """One open-loop run of the load generator (a process of its own); its JSON result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "load", "--url", url, "--mode", "open",
        "--arrivals", "constant", "--rate", str(rate), "--duration", str(seconds),
        "--warmup", str(WARMUP_S), "--mix", "detail=1", "--json", str(out),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    if process.returncode != 0:
        raise StackError(f"the load generator failed:\n{err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(await asyncio.to_thread(out.read_text))
    return result


async def measure(
    url: str, pids: dict[str, int], rate: float, seconds: float, out: Path
) -> dict[str, Any]:
    before = {name: cpu_us(pid) for name, pid in pids.items()}
    started = time.time_ns() // 1000
    result = await load(url, rate, seconds, out)
    # The analysis leaves out the load generator's warm-up, as its latencies do.
    window = (started + WARMUP_S * 1_000_000, time.time_ns() // 1000)
    after = {name: cpu_us(pid) for name, pid in pids.items()}
    # Warm-up requests cost CPU too: divide by every request sent.
    requests = max(1, round(result["sent"] + rate * WARMUP_S))
    cpu = {name: (after[name] - before[name]) / requests for name in pids}
    return {
        "rate": rate,
        "sent_per_s": result["rate"]["sent"],
        "ok": result["ok"],
        "requests": result["requests"],
        "p50_ms": result["latency_ms"]["p50"],
        "p99_ms": result["latency_ms"]["p99"],
        "cpu_us": cpu | {"total": sum(cpu.values())},
        "window_us": window,
    }


def breakdown(traces: list[Trace], window: tuple[int, int]) -> dict[str, Any]:
    """The analyser's report of the traces that started in ``window``."""
    document = analyze(within(traces, window)).to_json(per_trace=False)
    return {
        "traces": document["traces"],
        "categories": {c: document["categories"][c] for c in CATEGORIES},
        "sides": document["sides"],
        "bottleneck": document["bottleneck"],
    }


async def compare(args: argparse.Namespace) -> dict[str, Any]:
    amqp = os.environ.get("AMQP_URL", StackConfig.amqp_url).rstrip("/")
    workdir = args.json.parent / "compare"
    runs: list[dict[str, Any]] = []
    with vhost(f"compare-{uuid.uuid4().hex[:6]}") as name:
        config = StackConfig(
            amqp_url=f"{amqp}/{name}",
            http_port=args.http_port,
            s3_port=args.http_port + 1,
            episode_metrics_port=args.http_port + 2,
            stream_metrics_port=args.http_port + 3,
            episode_rpc_port=args.http_port + 4,
            stream_rpc_port=args.http_port + 5,
            sink_port=args.http_port + 6,
            workdir=workdir,
            transport="http",
            media_dramas=1,
            env={
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(args.sampling),
                "FAULTS_ENABLED": "false",
            },
        )
        async with Stack(config) as stack:
            amqp_port = args.http_port + 7
            await stack.start_process(
                "drama2", "drama", env={"HTTP_PORT": str(amqp_port), "RPC_TRANSPORT": "amqp"}
            )
            urls = {"http": config.base_url, "amqp": f"http://127.0.0.1:{amqp_port}"}
            fronts = {"http": "drama", "amqp": "drama2"}
            shared = {n: stack.processes[n].pid for n in ("episode", "stream", "sink")}
            shared["broker"] = broker_pid()
            for transport in TRANSPORTS:  # warm up both paths
                await load(urls[transport], 20, 2, workdir / "warmup.json")
            for i, rate in enumerate(args.rates):
                order = TRANSPORTS if i % 2 == 0 else TRANSPORTS[::-1]
                for transport in order:
                    pids = {"drama": stack.processes[fronts[transport]].pid, **shared}
                    out = workdir / f"load-{transport}-{rate:g}.json"
                    run = await measure(urls[transport], pids, rate, args.seconds, out)
                    runs.append({"transport": transport, **run})
                    print(
                        f"{rate:g}/s over {transport}: p50 {run['p50_ms']:.1f} ms, "
                        f"p99 {run['p99_ms']:.1f} ms, {run['cpu_us']['total']:.0f} us CPU/request",
                        file=sys.stderr,
                        flush=True,
                    )
    # The stack has stopped: every span is flushed and written.
    traces = select(load_traces([config.spans_path]), None, DETAIL)
    for run in runs:
        run["analysis"] = breakdown(traces, run.pop("window_us"))
    return {"settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs}


def report(result: dict[str, Any]) -> str:
    procs = ("drama", "episode", "stream", "broker", "sink")
    head = f"{'rate':>6} {'via':<5}{'sent/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
    head += "".join(f"{p:>8}" for p in procs) + f"{'total':>8}"
    lines = ["latency (open loop, from the intended send) and CPU us per request", head]
    for run in result["runs"]:
        row = f"{run['rate']:>6g} {run['transport']:<5}{run['sent_per_s']:7.1f}"
        row += f"{run['p50_ms']:8.1f}{run['p99_ms']:8.1f}"
        row += "".join(f"{run['cpu_us'].get(p, 0):8.0f}" for p in procs)
        lines.append(row + f"{run['cpu_us']['total']:8.0f}")
    lines += ["", "where the time goes (analyser, mean ms per trace)"]
    head = f"{'rate':>6} {'via':<5}{'traces':>7}" + "".join(f"{c:>11}" for c in CATEGORIES)
    lines.append(head + "  bottleneck")
    for run in result["runs"]:
        analysis = run["analysis"]
        row = f"{run['rate']:>6g} {run['transport']:<5}{analysis['traces']:7d}"
        row += "".join(f"{analysis['categories'][c]['mean_ms']:11.3f}" for c in CATEGORIES)
        top = analysis["bottleneck"] or {}
        lines.append(row + f"  {top.get('category', '-')} at {top.get('where', '-')}")
    lines += _sides(result["runs"])
    return "\n".join(lines)


def _sides(runs: list[dict[str, Any]]) -> list[str]:
    """Queue against wire per run: the headline question, with the analyser's definitions."""
    if not runs:
        return []
    sides = runs[0]["analysis"]["sides"]
    made = "; ".join(f"{side} = {' + '.join(s['categories'])}" for side, s in sides.items())
    lines = ["", f"in queues vs on the wire (ms per trace; {made})"]
    lines.append(
        f"{'rate':>6} {'via':<5}{'queue p50':>11}{'queue p99':>11}{'share':>7}"
        f"{'wire p50':>11}{'wire p99':>11}{'share':>7}"
    )
    for run in runs:
        queue, wire = run["analysis"]["sides"]["queue"], run["analysis"]["sides"]["wire"]
        lines.append(
            f"{run['rate']:>6g} {run['transport']:<5}"
            f"{queue['p50_ms']:11.3f}{queue['p99_ms']:11.3f}{queue['share']:7.1%}"
            f"{wire['p50_ms']:11.3f}{wire['p99_ms']:11.3f}{wire['share']:7.1%}"
        )
    return lines


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest compare", __doc__)
    rate = cli.number(0, 10_000, low_open=True)
    parser.add_argument(
        "--rates",
        type=lambda text: [rate(r) for r in text.split(",")],
        default=[20.0, 60.0, 120.0],
        help="arrival rates, requests a second, comma-separated (default 20,60,120)",
    )
    parser.add_argument(
        "--seconds", type=cli.number(0, 3600, low_open=True), default=10.0, help="each run's time"
    )
    parser.add_argument(
        "--sampling", type=cli.number(0, 1), default=1.0, help="trace sampling ratio"
    )
    parser.add_argument(
        "--http-port", type=cli.integer(1024, 65000), default=8280, help="first of 8 ports used"
    )
    parser.add_argument(
        "--json", type=cli.new_file, default=Path(".run/compare.json"), help="the result"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    (args.json.parent / "compare").mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(compare(args))
    except StackError as exc:
        print(f"make compare: {exc}", file=sys.stderr)
        return 1
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
