"""The adaptive bound of drama-service's admission control (drama/admission.py), in-process:
a lagging event loop shrinks the bound, so a request is shed sooner; a calm one restores it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY
from pytest_aiohttp import AiohttpClient

from drama.admission import Admission


def limit_metric() -> float | None:
    return REGISTRY.get_sample_value("http_server_admission_limit")


def test_lag_above_the_target_shrinks_the_bound_to_its_floor_and_calm_restores_it() -> None:
    admission = Admission(10, lag_target=0.01, floor=4)
    admission.observe(0.05)
    assert admission.limit == 9
    assert limit_metric() == 9
    for _ in range(20):
        admission.observe(0.05)
    assert admission.limit == 4  # the floor
    admission.observe(0.0)
    assert admission.limit == 5
    for _ in range(20):
        admission.observe(0.0)
    assert admission.limit == 10  # never above HTTP_MAX_IN_FLIGHT
    assert limit_metric() == 10


def test_a_fixed_bound_does_not_adapt() -> None:
    admission = Admission(10)
    admission.observe(0.0)
    assert admission.limit == 10


async def test_a_blocked_loop_sheds_sooner(aiohttp_client: AiohttpClient) -> None:
    admission = Admission(3, lag_target=0.01, floor=1)
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    app = web.Application(middlewares=[admission.middleware])
    app.cleanup_ctx.append(admission.adapting)
    app.router.add_get("/dramas", slow)
    client = await aiohttp_client(app)

    # The loop is kept lagging (blocked 50 ms, over two ticks) while requests arrive one by
    # one: the bound shrinks below 3 and one of the three is shed while fewer are in flight.
    held: list[asyncio.Task[Any]] = []
    shed = None
    async with asyncio.timeout(5):
        while shed is None and len(held) < 3:
            time.sleep(0.05)  # noqa: ASYNC251 - the loop lag this test is about
            await asyncio.sleep(0)
            task = asyncio.create_task(client.get("/dramas"))
            before = admission.in_flight
            while admission.in_flight == before and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            if task.done():
                shed = task.result()
            else:
                held.append(task)
    assert shed is not None, "three requests admitted: the bound did not shrink"
    assert len(held) < 3
    assert shed.status == 503
    assert shed.headers["Retry-After"] == "1"
    assert shed.content_type == "application/problem+json"
    body = await shed.json()
    assert body["type"].endswith("overloaded")
    assert limit_metric() is not None
    release.set()
    assert [(await task).status for task in held] == [200] * len(held)
