"""A call its caller gave up stops at the worker (broker/rpc/cancel.py), against the real broker:
the running handler is cancelled, a request still in the queue never runs, neither is replied
to nor dead-lettered, and a call that completes is untouched."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika.abc
import msgspec
import pytest
from prometheus_client import REGISTRY

from broker.rpc import AmqpRpcClient, HttpRpcClient, RpcWorker, Topology, serving_rpc_http
from tests.conftest import free_port
from tests.test_rpc import dead_letters


class Job(msgspec.Struct):
    value: int


class Jobs:
    """Handlers that hold until released and record how they ended."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def hold(self, job: Job) -> Job:
        self.started.append(job.value)
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(job.value)
            raise
        return job


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
async def worker(
    amqp_url: str, queue_name: str, topology: Topology, jobs: Jobs
) -> AsyncIterator[RpcWorker]:
    worker = RpcWorker(amqp_url, queue_name, prefetch=1, topology=topology, grace=5)
    worker.register("t.hold", Job, jobs.hold)
    await worker.start()
    yield worker
    jobs.release.set()
    await worker.stop()


@pytest.fixture
async def client(amqp_url: str, topology: Topology) -> AsyncIterator[AmqpRpcClient]:
    async with AmqpRpcClient(amqp_url, timeout=30.0, topology=topology) as client:
        yield client


DeadLetters = Callable[[], Awaitable[list[aio_pika.abc.AbstractIncomingMessage]]]


@pytest.fixture
def dead(amqp_url: str, topology: Topology) -> DeadLetters:
    """What is in the test's dead-letter queue (consumed)."""
    return functools.partial(dead_letters, amqp_url, topology)


def handled(outcome: str) -> float:
    labels = {"method": "t.hold", "outcome": outcome}
    return REGISTRY.get_sample_value("rpc_handler_duration_seconds_count", labels) or 0.0


def notices(queue: str) -> float:
    labels = {"queue": queue}
    return REGISTRY.get_sample_value("rpc_server_cancel_notices_total", labels) or 0.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Polled (nothing signals the worker's state), bounded far inside the 30 s deadline."""
    try:
        async with asyncio.timeout(5):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"not within 5 s: {what}")


async def test_a_call_given_up_stops_its_handler(
    worker: RpcWorker, client: AmqpRpcClient, jobs: Jobs, dead: DeadLetters
) -> None:
    cancelled_before = handled("cancelled")
    call = asyncio.create_task(client.call("t.hold", Job(1), Job))
    await jobs.entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The worker hears of it and stops the handler, long before the 30 s deadline.
    await until(lambda: jobs.cancelled == [1], "the handler cancelled")
    await until(lambda: worker.in_flight == 0, "the request settled")
    assert handled("cancelled") == cancelled_before + 1
    assert await dead() == []  # acked: not a bad request
    # The worker serves the next call as usual.
    jobs.release.set()
    assert await client.call("t.hold", Job(2), Job) == Job(2)


async def test_a_call_given_up_in_the_queue_never_runs(
    worker: RpcWorker, client: AmqpRpcClient, jobs: Jobs, dead: DeadLetters, queue_name: str
) -> None:
    notices_before = notices(queue_name)
    # prefetch 1: the first call holds the worker, the second waits in the queue.
    first = asyncio.create_task(client.call("t.hold", Job(1), Job))
    await jobs.entered.wait()
    second = asyncio.create_task(client.call("t.hold", Job(2), Job))
    await until(lambda: client.pending == 2, "both calls sent")
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await until(lambda: notices(queue_name) == notices_before + 1, "the worker heard of it")
    jobs.release.set()
    assert await first == Job(1)
    await until(lambda: worker.in_flight == 0, "the second request settled")
    assert jobs.started == [1]  # the second never ran
    assert jobs.cancelled == []
    assert await dead() == []


async def test_a_call_given_up_over_http_stops_its_handler(worker: RpcWorker, jobs: Jobs) -> None:
    port = free_port()
    async with (
        serving_rpc_http(worker, "127.0.0.1", port),
        HttpRpcClient({"t.": f"http://127.0.0.1:{port}"}, timeout=30.0) as client,
    ):
        call = asyncio.create_task(client.call("t.hold", Job(1), Job))
        await jobs.entered.wait()
        call.cancel()  # the client closes the connection; the worker's handler is cancelled
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: jobs.cancelled == [1], "the handler cancelled")
