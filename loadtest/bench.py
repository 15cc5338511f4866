"""``make bench``: how fast is the request path, and what do publisher confirms cost?

Starts the local stack (its own RabbitMQ vhost is not needed: it uses the default one, so run
it on a quiet broker) plus a second drama-service with publisher confirms off, then, in rounds
that alternate the variants so that drift on a noisy machine hits both alike:

- ``rpc``: ``episode.list`` for one drama, round trip at concurrency 1, from this process with
  an AmqpRpcClient with confirms on and one with confirms off (same worker process);
- ``http``: ``GET /dramas/{id}`` at a fixed concurrency for a fixed time, against the
  drama-service with confirms on and the one with confirms off.

Prints medians over the rounds (throughput, p50, p99) and their ratios, and writes JSON.
The load generator runs on the same 2 cores as the services: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from broker import AmqpRpcClient
from episode.contract import LIST, EpisodeList, ListEpisodes

from .stack import Stack, StackConfig, StackError


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
        "calls": count,
    }


async def http_load(
    session: aiohttp.ClientSession, base: str, concurrency: int, seconds: float, dramas: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def user(offset: int) -> None:
        nonlocal errors
        n = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(f"{base}/dramas/{n % dramas + 1}") as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)
            n += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "requests": len(latencies),
        "errors": errors,
    }


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    config = StackConfig(
        amqp_url=os.environ.get("AMQP_URL", StackConfig.amqp_url),
        http_port=args.http_port,
        s3_port=args.s3_port,
        workdir=Path(".run/bench"),
        media_dramas=1,
    )
    rpc: dict[str, list[dict[str, float]]] = {"confirms_on": [], "confirms_off": []}
    http: dict[str, list[dict[str, float]]] = {"confirms_on": [], "confirms_off": []}
    async with Stack(config) as stack:
        # The same drama-service with confirms off, on the next port.
        await stack.start_process(
            "drama2",
            "drama",
            env={"HTTP_PORT": str(args.http_port + 1), "RPC_PUBLISHER_CONFIRMS": "false"},
        )
        bases = {
            "confirms_on": config.base_url,
            "confirms_off": f"http://127.0.0.1:{args.http_port + 1}",
        }
        clients = {
            "confirms_on": AmqpRpcClient(config.amqp_url, publisher_confirms=True),
            "confirms_off": AmqpRpcClient(config.amqp_url, publisher_confirms=False),
        }
        for client in clients.values():
            await client.connect()
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for round_ in range(args.rounds):
                order = list(rpc) if round_ % 2 == 0 else list(reversed(rpc))
                for variant in order:
                    rpc[variant].append(await rpc_round_trips(clients[variant], args.rpc_calls))
                for variant in order:
                    result = await http_load(
                        session, bases[variant], args.concurrency, args.seconds, dramas=20
                    )
                    http[variant].append(result)
                    print(
                        f"round {round_ + 1}/{args.rounds} {variant:>12}: "
                        f"rpc p50 {rpc[variant][-1]['p50_ms']:.3f} ms, "
                        f"http {result['rps']:.0f} req/s p99 {result['p99_ms']:.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
        for client in clients.values():
            await client.close()
    return {
        "settings": vars(args) | {"cpus": os.cpu_count()},
        "rpc": {v: {k: median_of(r, k) for k in ("p50_ms", "p99_ms")} for v, r in rpc.items()},
        "http": {
            v: {k: median_of(r, k) for k in ("rps", "p50_ms", "p99_ms", "errors")}
            for v, r in http.items()
        },
        "rounds": {"rpc": rpc, "http": http},
    }


def report(result: dict[str, Any]) -> str:
    rpc, http = result["rpc"], result["http"]
    on, off = "confirms_on", "confirms_off"
    lines = [
        f"medians of {result['settings']['rounds']} alternating rounds",
        "",
        f"{'episode.list round trip, concurrency 1':<40}{'p50 ms':>9}{'p99 ms':>9}",
    ]
    for label, v in (("  publisher confirms on", on), ("  publisher confirms off", off)):
        lines.append(f"{label:<40}{rpc[v]['p50_ms']:9.3f}{rpc[v]['p99_ms']:9.3f}")
    lines += [
        f"{'  p50 on / off':<40}{rpc[on]['p50_ms'] / rpc[off]['p50_ms']:9.2f}",
        "",
        f"{'GET /dramas/{id}, concurrency ' + str(result['settings']['concurrency']):<40}"
        f"{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
    ]
    for label, v in (("  publisher confirms on", on), ("  publisher confirms off", off)):
        h = http[v]
        lines.append(
            f"{label:<40}{h['rps']:9.0f}{h['p50_ms']:9.2f}{h['p99_ms']:9.2f}{h['errors']:8.0f}"
        )
    lines.append(f"{'  req/s on / off':<40}{http[on]['rps'] / http[off]['rps']:9.2f}")
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
