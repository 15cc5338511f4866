"""End to end: make a bottleneck on purpose in the real services, and the analyser names it.

One stack, its spans kept by the stack's own OTLP sink; four phases of requests, each in its own
time window: no fault, a slow stream worker, a congested episode queue, a slow episode database.
The stack is stopped before the analysis, so every service has flushed its spans and the sink
has written them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from broker.rpc import FaultRule, send_fault_rule
from loadtest.analysis.breakdown import Report, analyze, select
from loadtest.analysis.traces import load_traces, within
from loadtest.devstack.config import StackConfig
from loadtest.devstack.stack import Stack
from tests.conftest import free_port

DETAIL = "GET /dramas/{id}"


async def drive(base: str, requests: int, concurrency: int) -> tuple[int, int]:
    """``requests`` detail requests, ``concurrency`` at a time; the phase's window (us)."""
    started = time.time_ns() // 1000
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n % 20 + 1)

    async def user(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            drama = queue.get_nowait()
            async with http.get(f"{base}/dramas/{drama}") as response:
                assert response.status == 200, await response.text()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(user(http) for _ in range(concurrency)))
    return started, time.time_ns() // 1000


async def fault(amqp_url: str, expect: int, **rule: Any) -> None:
    acks = await send_fault_rule(amqp_url, FaultRule(**rule), expect=expect, wait=10)
    assert len(acks) == expect


@pytest.mark.timing
@pytest.mark.timeout(180)
async def test_the_analyser_names_the_bottleneck_made_on_purpose(
    stack_config: Callable[..., StackConfig],
) -> None:
    config = stack_config(
        sink_port=free_port(),
        env={"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_BSP_SCHEDULE_DELAY": "200"},
    )
    windows: dict[str, tuple[int, int]] = {}
    async with Stack(config) as stack:
        assert stack.sinks_spans
        base, amqp = config.base_url, config.amqp_url
        await drive(base, 10, 2)  # warm up: connections, pools, caches
        windows["none"] = await drive(base, 40, 4)
        await fault(amqp, 1, method="stream.presign", delay_ms=50)
        windows["slow stream"] = await drive(base, 30, 4)
        await fault(amqp, 2, clear=True)
        await fault(amqp, 1, queue="rpc.episode", prefetch=1, delay_ms=15)
        windows["congested episode"] = await drive(base, 48, 16)
        await fault(amqp, 2, clear=True)
        await fault(amqp, 1, method="episode.list", db_delay_ms=30)
        windows["slow episode database"] = await drive(base, 30, 4)
    traces = select(load_traces([config.spans_path]), None, DETAIL)
    reports: dict[str, Report] = {}
    for phase, window in windows.items():
        reports[phase] = analyze(within(traces, window))
        assert len(reports[phase].results) >= 28, phase  # every request traced (warm-up aside)

    slow = reports["slow stream"].bottleneck()
    assert slow is not None
    assert slow["category"] == "app"
    assert slow["service"] == "stream-service"
    assert "stream.presign" in slow["operation"]
    assert slow["share"] > 0.5

    congested = reports["congested episode"].bottleneck()
    assert congested is not None
    assert congested["category"] == "queue_wait"
    assert congested["where"] == "episode-service:queue wait episode.list"

    slow_db = reports["slow episode database"].bottleneck()
    assert slow_db is not None
    assert slow_db["category"] == "db"
    assert slow_db["service"] == "episode-service"
    assert slow_db["operation"].startswith("SELECT")

    # No fault, no invented category: nothing crosses a mesh or a network hop here, every
    # microsecond is explained by a span, and the 50 ms of the slow phase is not there.
    calm = reports["none"].to_json(per_trace=False)["categories"]
    for category in ("mesh", "network", "residual"):
        assert calm[category]["mean_ms"] == 0, category
    assert calm["app"]["p50_ms"] < 25
    none = reports["none"].bottleneck()
    assert none is not None
    # And no queue made a bottleneck: the queues hold a fraction of the congested phase's wait
    # and of the requests' time. Which category comes first is the machine's to say: on a slow
    # or loaded one, the workers' scheduling delay (queue wait) and their own time (app) come
    # out neck and neck (28% and 30% here, measured), so the first place is not asserted.
    congested_wait = reports["congested episode"].to_json(per_trace=False)["categories"]
    assert calm["queue_wait"]["mean_ms"] < congested_wait["queue_wait"]["mean_ms"] / 5
    assert calm["queue_wait"]["share"] < 0.5 < congested_wait["queue_wait"]["share"]
