"""``python -m loadtest.bench.soak``: the stack at half its capacity for a while; memory and errors.

Starts a stack of its own (its own RabbitMQ virtual host, free ports, a temporary workdir),
measures the capacity (closed loop, 32 users, 10 s), then offers half of it open loop for
``--minutes``, sampling the resident memory (RSS) of every process of the stack every
``--every`` seconds. Prints, per process, the RSS at start and end and the slope of a
least-squares line through the samples (KiB a minute), and the outcomes of the requests.
``make soak`` runs it; it is not part of ``make test`` (docs/rpc.md, "Soak").
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

from loadtest.devstack.config import StackConfig, free_port, vhost
from loadtest.devstack.stack import Stack
from loadtest.load.command import discover
from loadtest.load.recorder import Recorder
from loadtest.load.runner import closed_loop, open_loop
from loadtest.load.schedule import constant_arrivals, parse_mix, plan, requests


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def slope_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in KiB a minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 60 if var else 0.0


async def soak(minutes: float, every: float, workdir: Path) -> int:
    with vhost(f"soak-{uuid.uuid4().hex[:8]}") as name:
        config = StackConfig(
            amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{name}",
            http_port=free_port(),
            s3_port=free_port(),
            episode_metrics_port=free_port(),
            stream_metrics_port=free_port(),
            episode_rpc_port=free_port(),
            stream_rpc_port=free_port(),
            workdir=workdir,
            env={"OTEL_TRACES_EXPORTER": "none", "REQUEST_LOG": "errors"},
        )
        async with Stack(config) as stack, aiohttp.ClientSession() as session:
            base = config.base_url
            catalogue = await discover(session, base)
            rng = random.Random(7)
            source = requests(parse_mix("list=1,detail=4"), catalogue, rng)
            measured = Recorder()
            await closed_loop(
                session,
                base,
                source,
                concurrency=32,
                duration=10,
                warmup=2,
                timeout=10,
                recorder=measured,
                progress=lambda: None,
            )
            capacity = measured.summary()["ok"] / 10
            rate = capacity / 2
            print(f"capacity {capacity:.0f}/s; soaking at {rate:.0f}/s for {minutes:g} min")
            seconds = minutes * 60
            shots = plan(constant_arrivals(rate, seconds), source)
            recorder = Recorder()
            pids = {n: p.pid for n, p in stack.processes.items()}
            samples: dict[str, list[tuple[float, int]]] = {n: [] for n in pids}
            loop = asyncio.get_running_loop()
            start = loop.time()
            sending = asyncio.create_task(
                open_loop(
                    session,
                    base,
                    shots,
                    warmup=0,
                    timeout=10,
                    max_in_flight=10_000,
                    recorder=recorder,
                    progress=lambda: None,
                )
            )
            while not sending.done():
                for process, pid in pids.items():
                    samples[process].append((loop.time() - start, rss_kib(pid)))
                await asyncio.wait({sending}, timeout=every)
            await sending
            summary = recorder.summary()
    print(f"{'process':>8} {'rss start MiB':>14} {'rss end MiB':>12} {'slope KiB/min':>14}")
    for process, points in samples.items():
        first, last = points[0][1] / 1024, points[-1][1] / 1024
        print(f"{process:>8} {first:14.1f} {last:12.1f} {slope_per_minute(points):14.1f}")
    errors = Counter(summary["errors_by_status"])
    for kind in ("timeouts", "not_started", "connection_errors"):
        if summary[kind]:
            errors[kind] = summary[kind]
    print(
        f"requests {summary['requests']}, ok {summary['ok']}, errors {dict(errors) or 'none'}, "
        f"p99 {summary['latency_ms']['p99']:.1f} ms"
    )
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=15, help="how long to soak")
    parser.add_argument("--every", type=float, default=10, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.every <= 0:
        parser.error("--minutes and --every must be positive")
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        return asyncio.run(soak(args.minutes, args.every, Path(workdir)))


if __name__ == "__main__":
    sys.exit(main())
