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
RPC round trip at concurrency 1: the project's client and worker (``loadtest.echo_worker``,
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
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.rpc import AmqpRpcClient
from broker.service import use_event_loop

from . import cli
from .analyze import percentile
from .echo_worker import METHOD as ECHO
from .echo_worker import Ask, Episodes
from .stack import Stack, StackConfig, StackError, vhost

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
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
BARE = "bare"
PROCESSES = ("gateway", "episode", "stream", "broker", "sink", "wrk")
MAX_STACKS = 40  # each takes --http-port + n; the sink is at + 50, the reference at + 100...


def cpu_us(pid: int) -> float:
    """User + system CPU time of a process so far, in microseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_US


def broker_pid() -> int:
    found = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False)
    if not found.stdout.strip():
        raise StackError("no beam.smp process: make bench meters a local RabbitMQ")
    return int(found.stdout.split()[0])


@dataclass
class Program:
    """A reference program (a script in the reference directory) run as a process."""

    name: str
    args: list[str]
    cwd: Path
    env: Mapping[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def start(self, health_url: str | None = None) -> None:
        with self.log.open("w") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *self.args, cwd=self.cwd, env={**os.environ, **self.env},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise StackError(f"{self.name} exited; see {self.log}")
            if await asyncio.to_thread(self._ready, health_url):
                return
            await asyncio.sleep(0.1)
        raise StackError(f"{self.name} did not get ready in 30 s; see {self.log}")

    def _ready(self, health_url: str | None) -> bool:
        if health_url is None:
            return "READY" in self.log.read_text()
        try:
            with urllib.request.urlopen(health_url, timeout=1):  # noqa: S310 - loopback URL
                return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class Target:
    """Something wrk drives: its URL and the processes whose CPU it costs."""

    url: str
    pids: dict[str, int]


def parse_wrk(text: str) -> dict[str, float]:
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if found is None:
        raise StackError(f"wrk printed no rate:\n{text}")
    result = {"rps": float(found.group(1))}
    for p in ("50", "99"):
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if match:
            value, unit = match.groups()
            result[f"p{p}_ms"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


async def wrk(
    target: Target,
    connections: int,
    seconds: int,
    *,
    script: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """One wrk run (``script``: a Lua script choosing the requests, ``env`` its variables);
    CPU per request of each process, wrk's own read just before it ends."""
    before = {name: cpu_us(pid) for name, pid in target.pids.items()}
    scripted = ["-s", str(script)] if script is not None else []
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
        *scripted, target.url, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    await asyncio.sleep(seconds * 0.98)
    wrk_us = cpu_us(process.pid)
    out, _ = await process.communicate()
    after = {name: cpu_us(pid) for name, pid in target.pids.items()}
    result = parse_wrk(out.decode())
    requests = max(1.0, result["rps"] * seconds)
    cpu = {name: (after[name] - before[name]) / requests for name in target.pids}
    cpu["wrk"] = wrk_us / requests
    for name in PROCESSES:  # the figures the table shows; cpu_us_total counts every process
        result[f"cpu_us_{name}"] = cpu.get(name, 0.0)
    result["cpu_us_total"] = sum(cpu.values())
    return result


async def project_round_trips(client: AmqpRpcClient, count: int) -> dict[str, float]:
    request = Ask(42)
    for _ in range(300):  # warm up, as the reference client does
        await client.call(ECHO, request, Episodes)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await client.call(ECHO, request, Episodes)
        latencies.append(time.perf_counter() - started)
    return {"p50_us": percentile(latencies, 50) * 1e6, "p99_us": percentile(latencies, 99) * 1e6}


async def floor_round_trips(reference: Path, amqp_url: str, count: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "rpc_client.py", "--variant", "aiormq", "--lat-n", str(count),
        "--conc", "0", cwd=reference, env={**os.environ, "PERF_AMQP_URL": amqp_url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise StackError(f"the reference aiormq client failed:\n{err.decode()[-2000:]}")
    c1 = json.loads(out.decode().strip().splitlines()[-1])["c1"]
    return {"p50_us": float(c1["p50_us"]), "p99_us": float(c1["p99_us"])}


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
        await helper.start_process("sink", "loadtest.sink", "--port", str(sink_port))
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
            ["-m", "loadtest.echo_worker", "--amqp-url", echo_url],
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


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """One variant's round over its copies: the mean of each figure (errors: their sum)."""
    return {
        key: sum(run[key] for run in runs) / (1 if key == "errors" else len(runs))
        for key in runs[0]
    }


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


def per_round(result: dict[str, Any], kind: str, key: str, a: str, b: str) -> list[float]:
    """``a``'s ``key`` over ``b``'s, round by round: the two ran minutes apart at most."""
    rounds = result["rounds"][kind]
    # A run of b that served nothing (its stack failed) has no ratio; the report says so.
    return [x[key] / y[key] for x, y in zip(rounds[a], rounds[b], strict=True) if y[key]]


def verdicts(result: dict[str, Any]) -> list[tuple[str, list[float], str]]:
    """The targets (docs/performance.md): (what, the ratio in each round, target such as ">= 0.80").

    Each ratio is taken within a round and the verdict is on their median: drift on a shared
    machine moves both sides of a pair alike, which a ratio of two medians over all the rounds
    does not cancel.
    """
    if not {"off", "10%", "100%"} <= result["http"].keys():
        return []
    return [
        ("throughput, tracing 100% / bare", per_round(result, "http", "rps", "100%", BARE),
         ">= 0.80"),
        ("throughput, tracing off / bare", per_round(result, "http", "rps", "off", BARE),
         ">= 1.20"),
        ("RPC round trip c=1 / aiormq floor",
         per_round(result, "rpc", "p50_us", "project", "aiormq"), "<= 1.25"),
        ("cost of 10% sampling", throughput_costs(result, "10%"), "<= 0.05"),
    ]  # fmt: skip


SHARED = ("gateway", "episode", "stream", "broker", "total")


def share_base(result: dict[str, Any]) -> str:
    """What the shares are taken over: ``0%`` when it ran, else ``off``."""
    return "0%" if "0%" in result["rounds"]["http"] else "off"


def sampled_shares(result: dict[str, Any]) -> dict[str, list[float]]:
    """Round by round and process by process: 10%'s extra CPU per request over the base, as a
    share of 100%'s. 0.10 if a traced request costs at 10% what it costs at 100%; more means
    the requests cost more when one in ten is traced than a tenth of tracing them all.

    The base is ``0%`` when it ran: like 10% and 100%, it carries the trace context in every
    request (the broker moves a ``traceparent`` header with each message), so what is left is
    the sampled tenth alone. Over ``off``, that header's cost shows as a share in the broker,
    which records nothing."""
    rounds = result["rounds"]["http"]
    base_name = share_base(result)
    if not {base_name, "10%", "100%"} <= rounds.keys():
        return {}
    shares: dict[str, list[float]] = {name: [] for name in SHARED}
    for base, ten, full in zip(rounds[base_name], rounds["10%"], rounds["100%"], strict=True):
        for name in SHARED:
            key = f"cpu_us_{name}"
            extra = full[key] - base[key]
            if extra > 0:  # 100% cost nothing more in this round: no share to take
                shares[name].append((ten[key] - base[key]) / extra)
    return shares


def throughput_costs(result: dict[str, Any], variant: str) -> list[float]:
    """Per round, the share of ``off``'s throughput that ``variant`` loses."""
    return [1 - r for r in per_round(result, "http", "rps", variant, "off")]


def variant_costs(result: dict[str, Any]) -> dict[str, list[float]]:
    """Per round, what each variant of the project loses against ``off`` (none without it):
    the figure an A/B of ``--variant`` settings is read by."""
    rounds = result["rounds"]["http"]
    if "off" not in rounds:
        return {}
    return {v: throughput_costs(result, v) for v in rounds if v not in {BARE, "off"}}


def met(value: float, target: str) -> bool:
    op, bound = target.split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_interval(values: list[float], confidence: float = 0.90) -> tuple[float, float] | None:
    """An interval that holds the true median with at least ``confidence``, whatever the
    distribution of the rounds: the order statistics x(k) and x(n+1-k) for the largest k such
    that Binomial(n, 1/2) falls below k with probability (1 - confidence) / 2 at most (with
    20 rounds, x(6) to x(15), which holds it with 95.9%). With too few rounds for
    ``confidence`` (under 5 for 90%) it is the whole range, which holds the median with less.
    It is the median of these processes' rounds: stacks started again may differ by more."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    tail = (1 - confidence) / 2

    def at_most(j: int) -> float:  # P(B <= j)
        return sum(math.comb(n, i) for i in range(j + 1)) / (1 << n)

    k = 1  # x(k + 1) is as far in as the interval may go while P(B <= k) stays in the tail
    while k + 1 <= n - k and at_most(k) <= tail:
        k += 1
    return ordered[k - 1], ordered[n - k]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its verdicts and shares (medians of the rounds): what the JSON keeps
    and the report prints."""
    targets = {
        what: {"median": median(v), "interval": median_interval(v), "rounds": v, "target": target}
        for what, v, target in verdicts(result)
    }
    shares = {name: median(v) for name, v in sampled_shares(result).items()}
    costs = {
        variant: {"median": median(v), "interval": median_interval(v), "rounds": v}
        for variant, v in variant_costs(result).items()
    }
    return result | {
        "targets": targets,
        "costs": costs,
        "sampled_share": shares,
        "sampled_share_base": share_base(result),
        # 0%'s loss against off: the part of tracing's cost that every request pays, sampled
        # or not (its context made, carried and read). Its own key for the JSON's readers.
        "unsampled_cost": costs.get("0%", {"median": None, "interval": None, "rounds": []}),
    }


def report(result: dict[str, Any]) -> str:
    http, rpc = result["http"], result["rpc"]
    bare = http[BARE]
    settings = result["settings"]
    head = f"{'variant':<12}{'req/s':>7}{'x bare':>7}{'p50 ms':>8}{'p99 ms':>8}"
    head += "".join(f"{p:>9}" for p in PROCESSES) + f"{'total':>9}{'x bare':>7}"
    lines = [
        f"GET /dramas/{{id}}, wrk -c{settings['connections']}, {settings['seconds']} s a run, "
        f"medians of {settings['rounds']} rounds; CPU in us per request",
        f"(each round: the mean of {settings.get('instances', 1)} copies of every variant, "
        "each started on its own)",
        head,
    ]
    for variant, h in http.items():
        row = f"{variant:<12}{h['rps']:7.0f}{h['rps'] / bare['rps']:7.2f}"
        row += f"{h.get('p50_ms', 0):8.1f}{h.get('p99_ms', 0):8.1f}"
        row += "".join(f"{h[f'cpu_us_{p}']:9.0f}" for p in PROCESSES)
        row += f"{h['cpu_us_total']:9.0f}{h['cpu_us_total'] / bare['cpu_us_total']:7.2f}"
        lines.append(row)
    project, floor = rpc["project"], rpc["aiormq"]
    lines += [
        "",
        "RPC round trip at concurrency 1       p50 us   p99 us",
        f"  project (RpcWorker, AmqpRpcClient) {project['p50_us']:8.0f} {project['p99_us']:8.0f}",
        f"  aiormq floor (reference)           {floor['p50_us']:8.0f} {floor['p99_us']:8.0f}",
    ]  # fmt: skip
    summary = summarize(result)
    lines.append("")
    if summary["targets"]:
        lines += [
            "targets: the median of the ratios taken within each round",
            "  (an interval that holds it with 90% confidence or more; the range of the rounds)",
        ]
    else:
        lines.append("targets: not judged, for want of off, 10% and 100% in this run")
    for what, judged in summary["targets"].items():
        value, target = judged["median"], judged["target"]
        if value is None:
            lines.append(f"  {what:<38}   none  {target:<8} no run of the reference served")
            continue
        verdict = "met" if met(value, target) else "NOT met"
        lines.append(f"  {what:<38}{value:7.2f}  {target:<8} {verdict:<8} {spread(judged)}")
    unsampled = summary["unsampled_cost"]["median"]
    if summary["targets"] and unsampled is not None:  # under the 10% verdict
        lines.append(
            f"  {'of which 0% (context, nothing sampled)':<38}{unsampled:7.2f}"
            f"{'':19}{spread(summary['unsampled_cost'])}"
        )
    # Each other variant's loss against off (an A/B of --variant settings is read here); those
    # above are not repeated.
    shown_above = {"10%", "0%"} if summary["targets"] else set()
    if others := {v: c for v, c in summary["costs"].items() if v not in shown_above}:
        lines += ["", "throughput lost against off, median of the rounds (interval; range)"]
        for variant, cost in others.items():
            if cost["median"] is None:
                lines.append(f"  {variant:<38}   none  no run of off served")
            else:
                lines.append(f"  {variant:<38}{cost['median']:7.2f}{'':19}{spread(cost)}")
    if shares := summary["sampled_share"]:
        base = summary["sampled_share_base"]
        lines += [
            "",
            f"10%'s extra CPU per request over {base}, as a share of 100%'s (0.10: a traced",
            "request costs the same at 10% as at 100%), median of the rounds",
            "  " + "  ".join(
                f"{name} -" if share is None else f"{name} {share:.2f}"
                for name, share in shares.items()
            ),
        ]  # fmt: skip
    return "\n".join(lines)


def spread(judged: dict[str, Any]) -> str:
    """``(low to high; rounds min to max)``: the median's interval (:func:`median_interval`)
    and the range."""
    (low, high), values = judged["interval"], judged["rounds"]
    return f"({low:.2f} to {high:.2f}; rounds {min(values):.2f} to {max(values):.2f})"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Bars of throughput and CPU per request by variant; False without matplotlib."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    http = result["http"]
    names = list(http)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(names, [http[n]["rps"] for n in names], color="#4c72b0")
    left.set_title("GET /dramas/{id} throughput (req/s)")
    bottom = [0.0] * len(names)
    for proc in PROCESSES:
        values = [http[n][f"cpu_us_{proc}"] for n in names]
        right.bar(names, values, bottom=bottom, label=proc)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_title("CPU per request (us), by process")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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
