"""Unroutable requests with the alternate exchange policy on ``rpc`` (broker/rpc/unroutable.py),
against the real broker: nothing lost, every caller answered at once, each one kept with its
reason in the dead letters, mandatory or not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aio_pika.abc
import msgspec
import pytest

from broker.rpc import AmqpRpcClient, RpcUnroutable, Topology
from broker.rpc.unroutable import ae_policy
from tests.test_api import rabbitmqctl
from tests.test_rpc import Answer, Ask, dead_letters

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


@pytest.fixture
async def policy(amqp_url: str, topology: Topology) -> AsyncIterator[str]:
    """The alternate exchange policy on this test's exchange, as an operator sets it, and the
    dead-letter queue, as the workers declare it."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlx = await channel.declare_exchange(
            topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(topology.dead_letter_queue, durable=True)
        await dead.bind(dlx)
    name = f"test-ae-{uuid.uuid4().hex[:8]}"
    spec = ae_policy(topology)
    await rabbitmqctl(
        "set_policy",
        name,
        str(spec["pattern"]),
        json.dumps(spec["definition"]),
        "--apply-to",
        "exchanges",
    )
    yield name
    await rabbitmqctl("clear_policy", name)


async def publish_plain(
    channel: aio_pika.abc.AbstractChannel,
    topology: Topology,
    method: str,
    correlation_id: str,
    reply_to: str = DIRECT_REPLY_TO,
) -> None:
    """A request as another client could send it: not mandatory, replies by direct reply-to."""
    exchange = await channel.get_exchange(topology.exchange)
    await exchange.publish(
        aio_pika.Message(
            msgspec.json.encode(Ask(1)),
            content_type="application/json",
            correlation_id=correlation_id,
            reply_to=reply_to,
        ),
        routing_key=method,
        mandatory=False,
    )


def reasons(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[tuple[str, str]]:
    return sorted(
        (str(m.routing_key), str((m.headers or {}).get("x-dead-letter-reason"))) for m in messages
    )


@pytest.mark.usefixtures("policy")
async def test_an_unbound_method_fails_fast_and_is_kept(amqp_url: str, topology: Topology) -> None:
    async with AmqpRpcClient(amqp_url, timeout=10.0, topology=topology) as client:
        started = time.monotonic()
        with pytest.raises(RpcUnroutable, match="no worker queue is bound"):
            await client.call("t.nobody", Ask(1), Answer)
        assert time.monotonic() - started < 1.0  # answered, not timed out (10 s)
    assert reasons(await dead_letters(amqp_url, topology)) == [("t.nobody", "unroutable")]


@pytest.mark.usefixtures("policy")
async def test_a_request_that_was_not_mandatory_is_answered_and_kept(
    amqp_url: str, topology: Topology
) -> None:
    async with AmqpRpcClient(amqp_url, timeout=10.0, topology=topology):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
            reply_queue = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
            await reply_queue.consume(replies.put, no_ack=True)
            await publish_plain(channel, topology, "t.nobody", "plain-1")
            async with asyncio.timeout(5):
                reply = await replies.get()
    assert reply.correlation_id == "plain-1"
    assert msgspec.json.decode(reply.body)["error"]["type"] == "unroutable"
    assert reasons(await dead_letters(amqp_url, topology)) == [("t.nobody", "unroutable")]


@pytest.mark.usefixtures("policy")
async def test_with_no_client_running_nothing_is_lost(amqp_url: str, topology: Topology) -> None:
    async with AmqpRpcClient(amqp_url, timeout=10.0, topology=topology):
        pass  # declares the alternate exchange and its queue, as drama-service does at start
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await publish_plain(channel, topology, "t.nobody", "plain-2", reply_to="gone.caller")
        kept = await channel.declare_queue(topology.unroutable_exchange, passive=True)
        assert kept.declaration_result.message_count == 1
    # The next client to start answers it and moves it to the dead letters.
    async with AmqpRpcClient(amqp_url, timeout=10.0, topology=topology):
        async with asyncio.timeout(5):
            while not (dead := await dead_letters(amqp_url, topology)):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    assert reasons(dead) == [("t.nobody", "unroutable")]
