"""Fault injection on real workers: delay, errors, congestion and a slow database, set and
cleared at run time through the broker's control exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import msgspec
import pytest
import sqlalchemy as sa

from broker.rpc import (
    AmqpRpcClient,
    FaultRule,
    RpcRemoteError,
    RpcWorker,
    Topology,
    send_fault_rule,
)
from broker.service import SqlStore
from broker.telemetry import collect_timings
from loadtest.load import fault as fault_cli
from tests.conftest import log_waiters


class Ask(msgspec.Struct):
    value: int


class Answer(msgspec.Struct):
    value: int


class Store(SqlStore):
    metadata = sa.MetaData()
    things = sa.Table("things", metadata, sa.Column("id", sa.Integer, primary_key=True))

    async def count(self) -> int:
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(sa.select(sa.func.count()).select_from(self.things))
                ).scalar_one()
            )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/faults.db")
    yield store
    await store.close()


@pytest.fixture
async def worker(
    amqp_url: str, queue_name: str, topology: Topology, store: Store
) -> AsyncIterator[RpcWorker]:
    async def echo(ask: Ask) -> Answer:
        return Answer(ask.value)

    async def count(ask: Ask) -> Answer:
        return Answer(await store.count())

    worker = RpcWorker(amqp_url, queue_name, prefetch=8, topology=topology, faults=True)
    worker.register("t.echo", Ask, echo)
    worker.register("t.count", Ask, count)
    async with worker:
        yield worker


@pytest.fixture
async def client(amqp_url: str, topology: Topology) -> AsyncIterator[AmqpRpcClient]:
    async with AmqpRpcClient(amqp_url, timeout=5.0, topology=topology) as client:
        yield client


async def set_rule(amqp_url: str, topology: Topology, **fields: object) -> list[str]:
    """Send a rule, wait for the one worker's answer; the methods now faulted."""
    rule = msgspec.convert(fields, FaultRule)
    acks = await send_fault_rule(
        amqp_url, rule, exchange=topology.control_exchange, expect=1, wait=5
    )
    assert len(acks) == 1
    return sorted(acks[0].rules)


async def call(client: AmqpRpcClient, method: str, value: int = 1) -> tuple[Answer, int, int]:
    """The answer, the worker's handler time and the queue wait (ns)."""
    with collect_timings() as timings:
        answer = await client.call(method, Ask(value), Answer)
    return answer, timings[0].handler_ns, timings[0].queue_wait_ns


@pytest.mark.usefixtures("worker")
async def test_delay_is_set_and_cleared_at_run_time(
    amqp_url: str, topology: Topology, client: AmqpRpcClient, queue_name: str
) -> None:
    # A delay far above what a stalled test process adds to a handler that does nothing (43 ms
    # seen in the parallel integration tier on 2 cores), and "untouched" well below it.
    delay_ms, untouched_ns = 200, 100_000_000
    _, handler_ns, _ = await call(client, "t.echo")
    assert handler_ns < untouched_ns
    rule = await set_rule(amqp_url, topology, queue=queue_name, method="t.echo", delay_ms=delay_ms)
    assert rule == ["t.echo"]
    answer, handler_ns, _ = await call(client, "t.echo", 7)
    assert answer.value == 7
    assert handler_ns >= delay_ms * 1_000_000
    _, other_ns, _ = await call(client, "t.count")  # another method is untouched
    assert other_ns < untouched_ns
    assert await set_rule(amqp_url, topology, clear=True) == []
    _, handler_ns, _ = await call(client, "t.echo")
    assert handler_ns < untouched_ns


async def test_error_rate_answers_injected_and_loses_nothing(
    amqp_url: str, topology: Topology, client: AmqpRpcClient, worker: RpcWorker
) -> None:
    await set_rule(amqp_url, topology, method="t.echo", error_rate=1.0)
    with pytest.raises(RpcRemoteError) as raised:
        await client.call("t.echo", Ask(1), Answer)
    assert raised.value.error_type == "injected"
    assert (await client.call("t.count", Ask(1), Answer)).value == 0
    # An injected error is an answer, not a bad message: nothing is dead-lettered.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dead_letter_queue, passive=True)
        assert dead.declaration_result.message_count == 0


@pytest.mark.usefixtures("worker")
async def test_lower_prefetch_congests_the_queue(
    amqp_url: str, topology: Topology, client: AmqpRpcClient, queue_name: str
) -> None:
    # Handlers of 200 ms: far above a stall of the test process (tens of ms, in the parallel
    # integration tier), so that "all at once" and "one at a time" cannot be confused.
    await set_rule(amqp_url, topology, method="t.echo", delay_ms=200)
    results = await asyncio.gather(*(call(client, "t.echo", n) for n in range(4)))
    assert max(wait for _, _, wait in results) < 100_000_000  # prefetch 8: all start at once
    await set_rule(amqp_url, topology, queue=queue_name, prefetch=1)
    results = await asyncio.gather(*(call(client, "t.echo", n) for n in range(4)))
    # One at a time: the last waits behind three 200 ms handlers.
    assert max(wait for _, _, wait in results) >= 560_000_000
    assert [answer.value for answer, _, _ in results] == [0, 1, 2, 3]


@pytest.mark.usefixtures("worker")
async def test_slow_database_slows_only_the_faulted_method(
    amqp_url: str, topology: Topology, client: AmqpRpcClient
) -> None:
    await set_rule(amqp_url, topology, method="t.count", db_delay_ms=200)
    answer, handler_ns, _ = await call(client, "t.count")
    assert answer.value == 0
    assert handler_ns >= 200_000_000
    _, echo_ns, _ = await call(client, "t.echo")
    assert echo_ns < 100_000_000  # well below the delay, above a stalled test process


@pytest.mark.usefixtures("worker")
async def test_rules_for_another_queue_are_ignored(
    amqp_url: str, topology: Topology, queue_name: str
) -> None:
    rule = FaultRule(queue="rpc.elsewhere", delay_ms=10)
    acks = await send_fault_rule(amqp_url, rule, exchange=topology.control_exchange, wait=0.3)
    assert acks == []
    # No ack could also mean a deaf worker: a rule for its own queue is answered, and as control
    # messages are taken in order, the one above has been heard (and not applied) by then.
    ours = FaultRule(queue=queue_name, method="t.echo")  # sets nothing, clears only t.echo
    acks = await send_fault_rule(
        amqp_url, ours, exchange=topology.control_exchange, expect=1, wait=5
    )
    assert [ack.queue for ack in acks] == [queue_name], "the worker answers no rule at all"
    assert acks[0].rules == {}  # the rule for rpc.elsewhere (key "*") was not applied


@pytest.mark.usefixtures("worker")
async def test_malformed_rule_is_dead_lettered(amqp_url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dead_letter_queue, passive=True)
        control = await channel.get_exchange(topology.control_exchange)
        await control.publish(aio_pika.Message(b'{"delay_ms": "slow"}'), routing_key="")
        message = await dead.get(timeout=5, fail=False)
        deadline = asyncio.get_running_loop().time() + 5
        while message is None and asyncio.get_running_loop().time() < deadline:
            message = await dead.get(fail=False)
        assert message is not None
        assert message.body == b'{"delay_ms": "slow"}'
        await message.ack()


@pytest.mark.usefixtures("worker")
async def test_cli_reports_the_workers_answers(
    amqp_url: str, topology: Topology, capsys: pytest.CaptureFixture[str], queue_name: str
) -> None:
    argv = ["--amqp-url", amqp_url, "--exchange", topology.control_exchange, "--expect", "1"]

    async def cli(*args: str) -> int:
        # The command runs its own event loop; the worker's is this test's.
        return await asyncio.to_thread(fault_cli.main, [*argv, *args])

    assert await cli("--method", "t.echo", "--delay-ms", "5") == 0
    out = capsys.readouterr().out
    assert queue_name in out
    assert '"t.echo":{"method":"t.echo","delay_ms":5.0}' in out
    assert await cli("--error-rate", "2") == 2  # validated before sending
    assert "--error-rate: must be a number >= 0 and <= 1" in capsys.readouterr().err
    assert await cli("--queue", "rpc.none", "--wait", "0.2") == 1
    assert "no worker answered" in capsys.readouterr().err


async def consumers(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0


@pytest.mark.usefixtures("worker")
async def test_rules_at_once_leave_one_consumer(
    amqp_url: str, topology: Topology, queue_name: str
) -> None:
    rules = [FaultRule(queue=queue_name, prefetch=n) for n in (2, 3, 4)]
    await asyncio.gather(
        *(
            send_fault_rule(amqp_url, rule, exchange=topology.control_exchange, expect=1, wait=5)
            for rule in rules
        )
    )
    assert await consumers(amqp_url, queue_name) == 1


async def test_a_deleted_queue_is_declared_and_consumed_again(
    amqp_url: str, queue_name: str, client: AmqpRpcClient, worker: RpcWorker
) -> None:
    with log_waiters(
        "broker._worker", "the broker cancelled the consumer", "worker consuming again"
    ) as (cancelled, again):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue_name)  # the broker cancels the worker's consumer
        async with asyncio.timeout(10):
            await cancelled.seen.wait()
            await again.seen.wait()
    assert worker.ready
    assert await consumers(amqp_url, queue_name) == 1
    assert (await client.call("t.echo", Ask(5), Answer)).value == 5
