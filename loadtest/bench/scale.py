"""``python -m loadtest scale``: does the cost of a request stay put as the catalogue and time grow?

Three checks, each printed with its verdict:

- **a page against a detail**: CPU per request (every process, from /proc) of
  ``GET /dramas?limit=20`` over ``GET /dramas/{id}``: at most 3;
- **catalogue size**: the same two requests against a catalogue of 20 dramas and one of 10,000,
  ids and pages spread over the whole catalogue (``wrk`` with a Lua script), the read caches off
  so that every request reaches the database: within 10%. A query that scanned would not be;
- **memory**: each service's resident memory after 10,000 requests and after 100,000: within 10%.

Each catalogue is a local stack of its own (own vhost, ports and SQLite files), tracing off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

from drama.handlers import encode_cursor
from loadtest import cli
from loadtest.bench.measure import Target, broker_pid
from loadtest.bench.measure import wrk as bench_wrk
from loadtest.devstack.config import StackConfig, StackError, vhost
from loadtest.devstack.stack import Stack

SERVICES = ("drama", "episode", "stream")
# wrk picks a random drama (detail) or a random page of the catalogue (list, by one of the
# cursors written into the script) for every request.
LUA = """
math.randomseed(os.time())
local n = tonumber(os.getenv("SCALE_DRAMAS"))
local kind = os.getenv("SCALE_KIND")
local cursors = {%s}
request = function()
  if kind == "detail" then
    return wrk.format("GET", "/dramas/" .. math.random(1, n))
  end
  local cursors_n = cursors[n]
  return wrk.format("GET", "/dramas?limit=20&cursor=" .. cursors_n[math.random(#cursors_n)])
end
"""


def lua(catalogues: tuple[int, ...]) -> str:
    """The script, with 200 random page cursors for each catalogue size."""
    rng = random.Random(1)
    tables = []
    for n in catalogues:
        cursors = (encode_cursor(rng.randrange(0, max(1, n - 19))) for _ in range(200))
        tables.append(f"[{n}] = {{" + ", ".join(f'"{c}"' for c in cursors) + "}")
    return LUA % ", ".join(tables)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise StackError(f"no VmRSS for pid {pid}")


async def wrk(
    url: str, script: Path, env: dict[str, str], seconds: int, pids: dict[str, int]
) -> dict[str, float]:
    """:func:`loadtest.bench.wrk` at 32 connections; ``cpu_us``: the services' and the
    broker's CPU per request (wrk's own left out)."""
    result = await bench_wrk(Target(url, pids), 32, seconds, script=script, env=env)
    result["cpu_us"] = result["cpu_us_total"] - result["cpu_us_wrk"]
    return result


def config(workdir: Path, amqp: str, port: int, dramas: int | None) -> StackConfig:
    return StackConfig(
        amqp_url=amqp,
        http_port=port,
        s3_port=port + 1,
        episode_metrics_port=port + 2,
        stream_metrics_port=port + 3,
        workdir=workdir,
        seed_dramas=dramas,
        media_dramas=1,
        env={"OTEL_SDK_DISABLED": "true", "CACHE_TTL_MS": "0", "FAULTS_ENABLED": "false"},
    )


async def costs(stack: Stack, script: Path, dramas: int, seconds: int) -> dict[str, Any]:
    """CPU per request of a detail and of a page, alternating, 3 rounds: the medians."""
    pids = {name: stack.processes[name].pid for name in SERVICES} | {"broker": broker_pid()}
    runs: dict[str, list[float]] = {"detail": [], "list": []}
    for round_ in range(3):
        for kind in ("detail", "list") if round_ % 2 == 0 else ("list", "detail"):
            env = {"SCALE_DRAMAS": str(dramas), "SCALE_KIND": kind}
            result = await wrk(stack.config.base_url, script, env, seconds, pids)
            if result["errors"]:
                raise StackError(f"{kind}: {result['errors']:.0f} non-2xx answers")
            runs[kind].append(result["cpu_us"])
    return {kind: sorted(values)[1] for kind, values in runs.items()}


async def memory(stack: Stack, script: Path, total: int) -> dict[str, dict[str, int]]:
    """Each service's RSS (KiB) after 10,000 requests and after ``total``."""
    pids = {name: stack.processes[name].pid for name in SERVICES}
    env = {"SCALE_DRAMAS": "20", "SCALE_KIND": "detail"}
    base = stack.config.base_url
    marks: dict[str, dict[str, int]] = {}
    sent = 0
    for mark in (10_000, total):
        while sent < mark:
            result = await wrk(base, script, env, 10, pids)
            sent += round(result["rps"] * 10)
        marks[str(mark)] = {name: rss_kib(pid) for name, pid in pids.items()}
        print(f"memory after {sent} requests: {marks[str(mark)]}", file=sys.stderr, flush=True)
    return marks


async def scale(args: argparse.Namespace) -> dict[str, Any]:
    amqp = os.environ.get("AMQP_URL", StackConfig.amqp_url).rstrip("/")
    workdir = args.json.parent / "scale"
    script = workdir / "scale.lua"
    script.write_text(lua((20, 10_000)))
    result: dict[str, Any] = {}
    for label, dramas in (("20", None), ("10000", 10_000)):
        with vhost(f"scale-{uuid.uuid4().hex[:6]}") as name:
            cfg = config(workdir / label, f"{amqp}/{name}", args.http_port, dramas)
            async with Stack(cfg) as stack:
                print(f"catalogue of {label} dramas up", file=sys.stderr, flush=True)
                result[label] = await costs(stack, script, dramas or 20, args.seconds)
                if dramas is None:
                    result["memory"] = await memory(stack, script, args.requests)
    return result


def verdicts(result: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    small, large = result["20"], result["10000"]
    page = small["list"] / small["detail"]
    rows = [("page of 20 / detail, CPU", page, "<= 3", page <= 3)]
    for kind in ("detail", "list"):
        growth = large[kind] / small[kind] - 1
        rows.append((f"{kind}: 10,000 dramas / 20, CPU", growth, "<= +10%", growth <= 0.10))
    marks = result["memory"]
    first, last = sorted(marks, key=int)
    for name in SERVICES:
        growth = marks[last][name] / marks[first][name] - 1
        rows.append((f"{name} memory {first} -> {last}", growth, "<= +10%", growth <= 0.10))
    return rows


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest scale", __doc__)
    add = parser.add_argument
    add("--seconds", type=cli.integer(1, 3600), default=5, help="each wrk run")
    add("--requests", type=cli.integer(1000, 10_000_000), default=100_000, help="memory check")
    add("--http-port", type=cli.integer(1024, 65000), default=8680, help="first of the ports used")
    add("--json", type=cli.new_file, default=Path(".run/scale.json"), help="the result")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    (args.json.parent / "scale").mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(scale(args))
    except StackError as exc:
        print(f"scale: {exc}", file=sys.stderr)
        return 1
    args.json.write_text(json.dumps(result, indent=2))
    print(f"CPU us/request (caches off): 20 dramas {result['20']}, 10,000 {result['10000']}")
    for what, value, target, met in verdicts(result):
        print(f"  {what:<36}{value:8.2f}  {target:<8} {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
