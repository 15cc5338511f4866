"""``python -m tests.overload_probe URL capacity|overload [RATE]``: the fault matrix's load
generator in a process of its own; prints its figures as JSON (tests/test_fault_matrix.py).

It does not raise its priority: a ``nice`` of its own ranked it only within pytest's session
(the kernel shares the CPU between sessions first), and with the session's priority raised the
503s' tail did not move; alone, against a server that only sheds, it measures p99 2-3 ms at 500
requests/s (docs/rpc.md, "What makes the tail").
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

import aiohttp

from loadtest.load.command import discover
from loadtest.load.runner import closed_loop
from loadtest.load.schedule import parse_mix, requests
from tests.test_fault_matrix import ByOutcome, load


async def probe_main(base: str, mode: str, rate: str | None = None) -> dict[str, Any]:
    """``python -m tests.overload_probe``: capacity (closed loop) or 2x (open loop)."""
    if mode == "capacity":
        recorder = ByOutcome()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            catalogue = await discover(session, base)
            source = requests(parse_mix("detail=1"), catalogue, random.Random(1))  # noqa: S311
            await closed_loop(
                session,
                base,
                source,
                concurrency=32,
                duration=4,
                warmup=1,
                timeout=10,
                recorder=recorder,
                progress=lambda: None,
            )
        return {"rate_ok": recorder.count("200") / 4}
    assert rate is not None
    duration = 6.0
    result = await load(base, rate=float(rate), duration=duration)
    return {
        "rate_ok": result.count("200") / duration,
        "counts": {k: len(v) for k, v in result.latencies.items()},
        "p99_503": result.p99("503"),
        "worst": result.worst,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe_main(*sys.argv[1:]))))
