"""``make run``'s supervisor: keeps the services of a running `loadtest.devstack.stack.Stack` up.

A service that exits on its own (``kill -9``, a crash) is logged with its exit status and
started again after a backoff that doubles from 1 s up to 30 s, and starts over at 1 s once a
process has stayed up for a minute. A process the stack stops on purpose is left stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from loadtest.devstack.config import StackError
from loadtest.devstack.stack import Stack

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # up this long, and the next death starts the backoff over


async def supervise(stack: Stack, names: Iterable[str], say: Callable[[str], None] = print) -> None:
    """Restart each of ``names`` whenever it dies, until cancelled."""
    async with asyncio.TaskGroup() as group:
        for name in names:
            group.create_task(_keep_running(stack, name, say))


async def _keep_running(stack: Stack, name: str, say: Callable[[str], None]) -> None:
    delay = BACKOFF_FIRST_S
    while (process := stack.processes.get(name)) is not None:
        started = time.monotonic()
        code = await process.wait()
        if stack.processes.get(name) is not process:
            return  # stopped by the stack itself
        if time.monotonic() - started >= STABLE_S:
            delay = BACKOFF_FIRST_S
        await stack.stop_process(name)  # collects its log reader and file
        say(f"supervisor: {name} exited with status {code}; restarting in {delay:.0f} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)
        try:
            await stack.start_process(name, name)
        except StackError as exc:
            say(f"supervisor: {name} did not come back: {exc}")
            continue
        say(f"supervisor: {name} is back (pid {stack.processes[name].pid})")
