"""What ``make bench`` measures with: CPU time from /proc, ``wrk``, and RPC round trips.

A `Target` is a URL and the processes whose CPU a request to it costs; `wrk` drives it and reads
each process's CPU time before and after. The reference programs (``../shared/reference-bench``)
run as `Program` processes; the RPC round trip at concurrency 1 is timed with the project's
client against ``loadtest.bench.echo_worker`` and with the reference's raw aiormq client.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker import AmqpRpcClient
from loadtest.analysis.breakdown import percentile
from loadtest.bench.echo_worker import METHOD as ECHO
from loadtest.bench.echo_worker import Ask, Episodes
from loadtest.devstack.config import StackError

_TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
PROCESSES = ("gateway", "episode", "stream", "broker", "sink", "wrk")


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
