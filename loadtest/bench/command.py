"""``make bench``: what the request path costs, against the bare minimum, measured in one run.

Starts, each on its own RabbitMQ vhost and ports:

- the project's stack in several variants: ``off`` (tracing disabled), ``0%``, ``10%`` and
  ``100%`` (tracing on, sampled so, exporting to an OTLP sink so that spans are made, batched,
  encoded and sent as in production; at ``0%`` every request carries its unsampled trace
  context, and nothing is recorded), ``req-confs`` and ``reply-confs`` (tracing off, the broker
  confirming requests or replies: both off by default);
- the reference programs of ``../shared/reference-bench``: ``bare``, an aiohttp gateway making
  the same two RPCs per ``GET /dramas/{id}`` with plain aio-pika, untraced, to two workers that
  answer a constant.

Then, in rounds that rotate the order so that drift on a noisy machine hits all alike, ``wrk``
drives ``GET /dramas/{id}`` at the same concurrency for the same time against each, while the
CPU time of every process (gateway, workers, broker, sink, wrk) is metered from /proc. And the
RPC round trip at concurrency 1: the project's client and worker (``loadtest.bench.echo_worker``,
a handler that does nothing), on the event loop the services use (``EVENT_LOOP``, uvloop by
default), against the reference's raw aiormq client and worker, the floor.

Prints medians over the rounds and their ratios to the bare minimum; judges its targets
(docs/performance.md) on the median of the ratios taken within each round, and shows an
interval that holds that median with 90% confidence or more, and the range of the rounds;
writes everything as JSON, and a plot when matplotlib is installed. Everything shares the 2
cores: compare ratios within one run, not absolutes across runs.

Many short rounds rather than a few long ones (12 of 2 s by default): the machine's speed
drifts over tens of seconds, so the two sides of a ratio are measured closer together, and
with more rounds the median's interval narrows (with 5 it is the whole range; the figures:
docs/performance.md, "How to read the figures").

And every variant twice (``--instances 2``), each copy a stack of its own, their figures
averaged in each round: a set of processes keeps its own speed for the whole run (where its
memory landed, its hash seed), so two copies of one variant differed by more than the
interval of one run sees, and runs of the same commit disagreed beyond their intervals
(docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import AmqpRpcClient, use_event_loop
from loadtest import cli
from loadtest.bench.judge import BARE, combined, medians, summarize
from loadtest.bench.measure import (
    Program,
    Target,
    broker_pid,
    floor_round_trips,
    project_round_trips,
    wrk,
)
from loadtest.bench.report import plot, report
from loadtest.devstack.config import StackConfig, StackError, vhost
from loadtest.devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]  # the checkout
DEFAULT_REFERENCE = ROOT.parent / "shared" / "reference-bench"

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "0%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
    "10%": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "req-confs": {"OTEL_SDK_DISABLED": "true", "RPC_PUBLISHER_CONFIRMS": "true"},
    "reply-confs": {"OTEL_SDK_DISABLED": "true", "RPC_REPLY_CONFIRMS": "true"},
}
MAX_STACKS = 40  # each takes --http-port + n; the sink is at + 50, the reference at + 100...


@dataclass
class Setup:
    targets: dict[str, list[Target]]  # each variant's copies
    rpc_client: AmqpRpcClient
    floor_url: str


@contextlib.asynccontextmanager
async def started(args: argparse.Namespace) -> AsyncIterator[Setup]:
    """Every variant, the reference programs and the RPC workers, stopped on the way out."""
    amqp = os.environ.get("AMQP_URL", StackConfig.amqp_url).rstrip("/")
    run_id = uuid.uuid4().hex[:6]
    workdir = args.json.parent / "bench"
    broker = broker_pid()
    targets: dict[str, list[Target]] = {BARE: [], **{variant: [] for variant in args.variants}}
    async with contextlib.AsyncExitStack() as exits:

        def new_vhost(suffix: str) -> str:
            name = f"bench-{run_id}-{suffix}"
            exits.enter_context(vhost(name))
            return f"{amqp}/{name}"

        async def program(name: str, argv: list[str], env: dict[str, str], health: str = "") -> int:
            prog = Program(name, argv, args.reference, env, workdir / f"{name}.log")
            exits.push_async_callback(prog.stop)
            await prog.start(health or None)
            return prog.pid

        helper = Stack(StackConfig(workdir=workdir))
        sink_port = args.http_port + 50
        await helper.start_process("sink", "loadtest.devstack.sink", "--port", str(sink_port))
        exits.push_async_callback(helper.stop_process, "sink")
        shared = {"broker": broker, "sink": helper.processes["sink"].pid}

        for copy in range(args.instances):
            bare_env = {"PERF_AMQP_URL": new_vhost(f"{BARE}-{copy}")}
            bare = {
                "episode": await program(
                    f"bare-episode-{copy}",
                    ["rpc_worker.py", "--mode", "aiopika", "--queue", "perf-episode"], bare_env,
                ),
                "stream": await program(
                    f"bare-stream-{copy}",
                    ["rpc_worker.py", "--mode", "aiopika", "--queue", "perf-stream"], bare_env,
                ),
            }  # fmt: skip
            port = args.http_port + 100 + copy
            bare["gateway"] = await program(
                f"bare-gateway-{copy}",
                ["http_app.py", "gateway", "--fanout", "rpc", "--port", str(port)],
                bare_env,
                f"http://127.0.0.1:{port}/health",
            )
            targets[BARE].append(Target(f"http://127.0.0.1:{port}/dramas/42", bare | shared))
            print(
                f"started the reference (bare aio-pika fan-out), copy {copy + 1}", file=sys.stderr
            )

            for i, (variant, env) in enumerate(args.variants.items()):
                n = copy * len(args.variants) + i
                stack = Stack(
                    StackConfig(
                        amqp_url=new_vhost(f"{i}-{copy}"),
                        http_port=args.http_port + n,
                        s3_port=args.s3_port + n,
                        episode_metrics_port=args.s3_port + 100 + 2 * n,
                        stream_metrics_port=args.s3_port + 101 + 2 * n,
                        workdir=workdir / f"{i}-{copy}",
                        media_dramas=1,
                        env={
                            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
                            "FAULTS_ENABLED": "false",
                            **env,
                        },
                    )
                )
                await exits.enter_async_context(stack)
                pids = {"gateway": stack.processes["drama"].pid}
                pids |= {name: stack.processes[name].pid for name in ("episode", "stream")}
                targets[variant].append(Target(f"{stack.config.base_url}/dramas/1", pids | shared))
                print(f"started variant {variant}, copy {copy + 1}", file=sys.stderr, flush=True)

        echo_url = new_vhost("echo")
        await program(
            "echo-worker",
            ["-m", "loadtest.bench.echo_worker", "--amqp-url", echo_url],
            {"OTEL_SDK_DISABLED": "true", "PYTHONPATH": str(ROOT)},
        )
        floor_url = new_vhost("floor")
        await program(
            "floor-worker",
            ["rpc_worker.py", "--mode", "aiormq", "--queue", "perf-aiormq"],
            {"PERF_AMQP_URL": floor_url},
        )
        client = AmqpRpcClient(echo_url)
        await client.connect()
        exits.push_async_callback(client.close)
        yield Setup(targets, client, floor_url)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    http: dict[str, list[dict[str, float]]] = {BARE: [], **{v: [] for v in args.variants}}
    copies: dict[str, list[list[dict[str, float]]]] = {v: [] for v in http}
    rpc: dict[str, list[dict[str, float]]] = {"project": [], "aiormq": []}
    async with started(args) as setup:
        order = list(http)
        for targets in setup.targets.values():  # warm up: connections, pools, caches
            for target in targets:
                await wrk(target, args.connections, 2)
        for round_ in range(args.rounds):
            runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in order}
            for copy in range(args.instances):  # every variant's first copy, then the second...
                for variant in order:
                    target = setup.targets[variant][copy]
                    runs[variant].append(await wrk(target, args.connections, args.seconds))
            for variant in order:
                result = combined(runs[variant])
                http[variant].append(result)
                copies[variant].append(runs[variant])
                each = ", ".join(f"{run['rps']:.0f}" for run in runs[variant])
                print(
                    f"round {round_ + 1}/{args.rounds} {variant:>11}: "
                    f"{result['rps']:6.0f} req/s ({each}), p99 {result.get('p99_ms', 0):6.1f} ms, "
                    f"{result['cpu_us_total']:6.0f} us CPU/request",
                    file=sys.stderr,
                    flush=True,
                )
            order = order[1:] + order[:1]  # rotate: each variant leads once
            for name in rpc if round_ % 2 == 0 else reversed(list(rpc)):
                if name == "project":
                    rpc[name].append(await project_round_trips(setup.rpc_client, args.rpc_calls))
                else:
                    rpc[name].append(
                        await floor_round_trips(args.reference, setup.floor_url, args.rpc_calls)
                    )
    return {
        "settings": {k: str(v) for k, v in vars(args).items()} | {"cpus": os.cpu_count()},
        "http": {v: medians(r) for v, r in http.items()},
        "rpc": {v: medians(r) for v, r in rpc.items()},
        "rounds": {"http": http, "rpc": rpc, "http_copies": copies},
    }


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest bench", __doc__)
    add = parser.add_argument
    add("--rounds", type=cli.integer(1, 1000), default=12, help="rounds of every variant")
    add(
        "--instances",
        type=cli.integer(1, 8),
        default=2,
        help="copies of each variant, each driven every round",
    )
    add("--rpc-calls", type=cli.integer(1, 1_000_000), default=500, help="a round, each side")
    add("--connections", type=cli.integer(1, 10_000), default=50, help="wrk -c (the reference: 50)")
    add("--seconds", type=cli.integer(1, 3600), default=2, help="wrk -d, a variant a round")
    add("--http-port", type=cli.integer(1024, 65000), default=8180, help="first port of the stacks")
    add("--s3-port", type=cli.integer(1024, 65000), default=9180, help="first embedded S3 port")
    add(
        "--reference",
        type=Path,
        default=None,
        help="the reference-bench directory (default: $REFERENCE_BENCH, else "
        "../shared/reference-bench)",
    )
    add("--json", type=cli.new_file, default=Path(".run/bench.json"), help="the result")
    add("--plot", type=cli.new_file, default=Path(".run/bench.png"), help="the plot")
    add(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE,...",
        help="an extra project variant, for an A/B of a setting (say off-asyncio:"
        "OTEL_SDK_DISABLED=true,EVENT_LOOP=asyncio); repeatable",
    )
    add("--only", help="run only these variants of the project (comma-separated)")
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (exit 2 on a bad one)."""
    p = parser()
    args = p.parse_args(argv)
    args.reference = args.reference or Path(os.environ.get("REFERENCE_BENCH", DEFAULT_REFERENCE))
    args.variants = dict(VARIANTS)
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        pairs = [a.split("=", 1) for a in assignments.split(",") if a]
        if not name or any(len(pair) != 2 for pair in pairs):
            p.error(f"argument --variant: must be NAME:VAR=VALUE,..., not {spec!r}")
        args.variants[name] = dict(pairs)
    if args.only:
        args.variants = {k: v for k, v in args.variants.items() if k in args.only.split(",")}
        if not args.variants:
            p.error(f"argument --only: names no variant of {', '.join(VARIANTS)}")
    if args.instances * len(args.variants) > MAX_STACKS:  # their ports run into the others'
        p.error(f"at most {MAX_STACKS} stacks: --instances times the variants")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    (args.json.parent / "bench").mkdir(parents=True, exist_ok=True)
    if not (args.reference / "http_app.py").exists():
        print(
            f"make bench: no reference programs in {args.reference} (--reference)", file=sys.stderr
        )
        return 1
    if shutil.which("wrk") is None:
        print("make bench: wrk is missing (Debian package wrk)", file=sys.stderr)
        return 1
    # The project's RPC client (the round trip at c=1) on the loop the services run on.
    use_event_loop(os.environ.get("EVENT_LOOP", "uvloop"))
    try:
        result = asyncio.run(bench(args))
    except StackError as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    args.json.write_text(json.dumps(summarize(result), indent=2, default=str))
    print(report(result))
    print(f"\nJSON: {args.json}")
    if plot(result, args.plot):
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
