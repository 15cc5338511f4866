"""``make bench``: what the request path costs, and what tracing and publisher confirms add.

Starts one local stack per variant, each on its own RabbitMQ vhost and ports, plus an OTLP sink
that the traced variants export to (so tracing costs what it costs in production: spans made,
batched, encoded and sent). Then, in rounds that alternate the order of the variants so that
drift on a noisy machine hits all alike:

- ``GET /dramas/{id}`` at a fixed concurrency for a fixed time against each variant, metering
  the CPU time of every process (drama, episode, stream, the broker, the sink, this load
  generator) from /proc, per request;
- ``episode.list`` round trips at concurrency 1 from this process, publisher confirms on and off.

Variants: ``off`` (tracing disabled), ``10%`` and ``100%`` (tracing on, sampled so), and
``no-confirms`` (tracing off, request publisher confirms off). Prints medians over the rounds
and their ratios to ``off``, and writes everything as JSON. The load generator shares the 2
cores with the services: compare ratios within one run, not absolutes across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from broker import AmqpRpcClient
from episode.contract import LIST, EpisodeList, ListEpisodes

from .stack import Stack, StackConfig, StackError, vhost

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "10%": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "no-confirms": {"OTEL_SDK_DISABLED": "true", "RPC_PUBLISHER_CONFIRMS": "false"},
}
PROCESSES = ("drama", "episode", "stream", "broker", "sink", "loadgen")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_us(pid: int) -> float:
    """User + system CPU time of a process so far, in microseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_US


def broker_pid() -> int:
    found = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False)
    if not found.stdout.strip():
        raise StackError("no beam.smp process: make bench meters a local RabbitMQ")
    return int(found.stdout.split()[0])


async def rpc_round_trips(client: AmqpRpcClient, count: int) -> dict[str, float]:
    request = ListEpisodes(drama_ids=[1])
    for _ in range(50):  # warm up
        await client.call(LIST, request, EpisodeList)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await client.call(LIST, request, EpisodeList)
        latencies.append(time.perf_counter() - started)
    return {
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


async def http_load(
    session: aiohttp.ClientSession,
    base: str,
    pids: dict[str, int],
    concurrency: int,
    seconds: float,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def user(offset: int) -> None:
        nonlocal errors
        n = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(f"{base}/dramas/{n % 20 + 1}") as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)
            n += concurrency

    cpu_before = {name: cpu_us(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_after = {name: cpu_us(pid) for name, pid in pids.items()}
    requests = max(1, len(latencies))
    result = {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "errors": errors,
    }
    for name in pids:
        result[f"cpu_us_{name}"] = (cpu_after[name] - cpu_before[name]) / requests
    result["cpu_us_total"] = sum(result[f"cpu_us_{name}"] for name in pids)
    return result


@contextlib.asynccontextmanager
async def stacks(args: argparse.Namespace, sink_url: str) -> AsyncIterator[dict[str, Stack]]:
    amqp = os.environ.get("AMQP_URL", StackConfig.amqp_url).rstrip("/")
    run_id = uuid.uuid4().hex[:6]
    started: dict[str, Stack] = {}
    async with contextlib.AsyncExitStack() as exits:
        for i, (variant, env) in enumerate(VARIANTS.items()):
            name = f"bench-{run_id}-{i}"
            exits.enter_context(vhost(name))
            stack = Stack(
                StackConfig(
                    amqp_url=f"{amqp}/{name}",
                    http_port=args.http_port + i,
                    s3_port=args.s3_port + i,
                    episode_metrics_port=args.s3_port + 10 + 2 * i,
                    stream_metrics_port=args.s3_port + 11 + 2 * i,
                    workdir=Path(f".run/bench/{i}"),
                    media_dramas=1,
                    env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink_url, **env},
                )
            )
            started[variant] = await exits.enter_async_context(stack)
            print(f"started variant {variant}", file=sys.stderr, flush=True)
        yield started


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    sink_port = args.http_port + 50
    sink_url = f"http://127.0.0.1:{sink_port}"
    helper = Stack(StackConfig(workdir=Path(".run/bench")))
    helper.config.workdir.mkdir(parents=True, exist_ok=True)
    await helper.start_process("sink", "loadtest.sink", "--port", str(sink_port))
    http: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    rpc: dict[str, list[dict[str, float]]] = {"confirms_on": [], "confirms_off": []}
    try:
        async with stacks(args, sink_url) as running:
            shared = {"broker": broker_pid(), "sink": helper.processes["sink"].pid}
            shared["loadgen"] = os.getpid()
            base_amqp = running["off"].config.amqp_url
            clients = {
                "confirms_on": AmqpRpcClient(base_amqp, publisher_confirms=True),
                "confirms_off": AmqpRpcClient(base_amqp, publisher_confirms=False),
            }
            for client in clients.values():
                await client.connect()
            connector = aiohttp.TCPConnector(limit=args.concurrency * len(VARIANTS))
            async with aiohttp.ClientSession(connector=connector) as session:
                order = list(VARIANTS)
                for round_ in range(args.rounds):
                    for variant in order:
                        stack = running[variant]
                        pids = {n: stack.processes[n].pid for n in ("drama", "episode", "stream")}
                        result = await http_load(
                            session,
                            stack.config.base_url,
                            pids | shared,
                            args.concurrency,
                            args.seconds,
                        )
                        http[variant].append(result)
                        print(
                            f"round {round_ + 1}/{args.rounds} {variant:>11}: "
                            f"{result['rps']:6.0f} req/s, p99 {result['p99_ms']:6.1f} ms, "
                            f"{result['cpu_us_total']:6.0f} us CPU/request",
                            file=sys.stderr,
                            flush=True,
                        )
                    for name in rpc if round_ % 2 == 0 else reversed(list(rpc)):
                        rpc[name].append(await rpc_round_trips(clients[name], args.rpc_calls))
                    order = order[1:] + order[:1]  # rotate: each variant leads once
            for client in clients.values():
                await client.close()
    finally:
        await helper.stop_process("sink")
    return {
        "settings": vars(args) | {"cpus": os.cpu_count()},
        "http": {v: medians(r) for v, r in http.items()},
        "rpc": {v: medians(r) for v, r in rpc.items()},
        "rounds": {"http": http, "rpc": rpc},
    }


def report(result: dict[str, Any]) -> str:
    http, rpc = result["http"], result["rpc"]
    off = http["off"]
    settings = result["settings"]
    head = f"{'variant':<12}{'req/s':>7}{'x off':>7}{'p50 ms':>8}{'p99 ms':>8}"
    head += "".join(f"{p:>9}" for p in PROCESSES) + f"{'total':>9}"
    lines = [
        f"GET /dramas/{{id}}, concurrency {settings['concurrency']}, {settings['seconds']:.0f} s a "
        f"run, medians of {settings['rounds']} rounds; CPU in us per request",
        head,
    ]
    for variant, h in http.items():
        row = f"{variant:<12}{h['rps']:7.0f}{h['rps'] / off['rps']:7.2f}"
        row += f"{h['p50_ms']:8.1f}{h['p99_ms']:8.1f}"
        row += "".join(f"{h[f'cpu_us_{p}']:9.0f}" for p in PROCESSES) + f"{h['cpu_us_total']:9.0f}"
        lines.append(row)
    on, no = rpc["confirms_on"], rpc["confirms_off"]
    lines += [
        "",
        "episode.list round trip at concurrency 1      p50 ms   p99 ms",
        f"  publisher confirms on                     {on['p50_ms']:8.3f} {on['p99_ms']:8.3f}",
        f"  publisher confirms off                    {no['p50_ms']:8.3f} {no['p99_ms']:8.3f}",
        f"  on / off                                  {on['p50_ms'] / no['p50_ms']:8.2f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rpc-calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--http-port", type=int, default=8180)
    parser.add_argument("--s3-port", type=int, default=9180)
    parser.add_argument("--json", type=Path, default=Path(".run/bench.json"))
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(bench(args))
    except StackError as exc:
        print(f"make bench: {exc}", file=sys.stderr)
        return 1
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
