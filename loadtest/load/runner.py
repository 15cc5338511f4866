"""The two ways of sending load: an open loop that keeps its schedule, and a closed loop.

Open loop: every request has an intended send time fixed before the run (:mod:`.schedule`); it
is sent then, whatever became of the requests before it, and its latency is counted from that
intended time. A server that stalls therefore shows as latency (the requests queue up, here or
there) and not as fewer requests. When ``max_in_flight`` connections are busy, a request waits
here for one; that wait is part of its latency, and a request still waiting at its deadline is
counted as ``not_started``, never dropped.

Closed loop: ``concurrency`` users each send a request, wait for the answer, send the next. The
load follows the server: when it stalls, the users stop sending, and the stall hides in the
few requests that were in flight (coordinated omission). It is here to show that difference.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiohttp

from loadtest.load.recorder import CONNECTION, NOT_STARTED, TIMEOUT, Recorder
from loadtest.load.schedule import Shot

Progress = Callable[[], object]


async def send(
    session: aiohttp.ClientSession,
    url: str,
    *,
    scenario: str,
    intended: float,
    timeout: float,
    slots: contextlib.AbstractAsyncContextManager[Any],
    recorder: Recorder,
) -> None:
    """One request, timed from ``intended`` (loop time) and bounded by ``intended + timeout``.

    ``slots`` is held from the send to the answer: the open loop's bound on requests in flight.
    """
    loop = asyncio.get_running_loop()
    started = False
    outcome: int | str
    try:
        async with asyncio.timeout_at(intended + timeout), slots:
            started = True
            recorder.left(loop.time() - intended)
            async with session.get(url, allow_redirects=False) as response:
                await response.read()
                outcome = response.status
    except TimeoutError:
        outcome = TIMEOUT if started else NOT_STARTED
    except aiohttp.ClientError:
        outcome = CONNECTION
    recorder.add(scenario, outcome, loop.time() - intended)


async def open_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    shots: Sequence[Shot],
    *,
    warmup: float,
    timeout: float,
    max_in_flight: int,
    recorder: Recorder,
    progress: Progress,
) -> float:
    """Send ``shots`` at their times; return the loop time the schedule started at.

    Shots before ``warmup`` are sent and answered like the others but not recorded.
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(max_in_flight)
    discard = Recorder()
    start = loop.time()

    async def shoot(shot: Shot, intended: float) -> None:
        measured = recorder if shot.at >= warmup else discard
        await send(
            session,
            base_url + shot.path,
            scenario=shot.scenario,
            intended=intended,
            timeout=timeout,
            slots=slots,
            recorder=measured,
        )
        progress()

    async with asyncio.TaskGroup() as tasks:
        for shot in shots:
            intended = start + shot.at
            delay = intended - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # Late (the loop was busy)? Send now; the latency still counts from `intended`.
            tasks.create_task(shoot(shot, intended))
    return start


async def closed_loop(
    session: aiohttp.ClientSession,
    base_url: str,
    source: Iterator[tuple[str, str]],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
    recorder: Recorder,
    progress: Progress,
) -> float:
    """``concurrency`` users, back to back, for ``warmup + duration``; returns the start time."""
    loop = asyncio.get_running_loop()
    # Each user waits for its answer: never more than `concurrency` in flight, nothing to bound.
    slots = contextlib.nullcontext()
    discard = Recorder()
    start = loop.time()
    measure_from, end = start + warmup, start + warmup + duration

    async def user() -> None:
        while (now := loop.time()) < end:
            scenario, path = next(source)
            measured = recorder if now >= measure_from else discard
            await send(
                session,
                base_url + path,
                scenario=scenario,
                intended=now,
                timeout=timeout,
                slots=slots,
                recorder=measured,
            )
            progress()

    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(user())
    return start
