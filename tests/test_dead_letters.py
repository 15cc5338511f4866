"""Nothing lost silently: dead letters carry the worker's reason, a request that keeps coming
back (it crashes its worker) is bounded, and malformed headers still get a reply. Real broker.
"""

from __future__ import annotations

import asyncio

import aio_pika
import msgspec
import pytest

from broker.rpc import AmqpRpcClient, RpcUnroutable, RpcWorker, Topology
from tests.test_rpc import Ask, Service, dead_letters, start_worker
from tests.test_rpc import client as client  # noqa: PLC0414 - fixtures used here
from tests.test_rpc import service as service  # noqa: PLC0414
from tests.test_rpc import worker as worker  # noqa: PLC0414


async def _request(
    amqp_url: str, topology: Topology, method: str, body: bytes, **headers: object
) -> aio_pika.abc.AbstractIncomingMessage:
    """Publish a request with these headers and return its reply."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(topology.exchange)
        await exchange.publish(
            aio_pika.Message(body, correlation_id="c1", reply_to=replies.name, headers=headers),  # type: ignore[arg-type]
            routing_key=method,
        )
        async with replies.iterator(timeout=10) as it:
            reply = await anext(it)
            await reply.ack()
    return reply


async def test_malformed_trace_headers_still_get_their_reply(
    worker: RpcWorker, amqp_url: str, topology: Topology
) -> None:
    body = msgspec.json.encode(Ask(5))
    for headers in (
        {"traceparent": 12345},
        {"traceparent": 1.5},
        {"traceparent": {"a": 1}, "tracestate": 7},
        {"traceparent": "not a traceparent", "x-sent-at-ns": "soon", "x-timeout-ms": [1]},
    ):
        reply = await _request(amqp_url, topology, "t.echo", body, **headers)
        assert msgspec.json.decode(reply.body) == {"result": {"value": 5}}, headers
    assert await dead_letters(amqp_url, topology) == []


async def _redeliver(amqp_url: str, queue_name: str) -> None:
    """Take the next request off the queue without acking it and drop the channel, as a worker
    killed mid-request does: the broker redelivers it, flagged ``redelivered``."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        message = await queue.get(no_ack=False, timeout=5)
        assert message is not None
    # Closed unacked: back in the queue.


async def test_redeliveries_are_bounded_and_dead_lettered_with_the_reason(
    amqp_url: str, queue_name: str, topology: Topology, service: Service
) -> None:
    # The topology exists, then no worker runs while requests "crash" their consumers.
    await (await start_worker(amqp_url, queue_name, topology, service)).stop()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(topology.exchange)
        body = msgspec.json.encode(Ask(1))
        # One already redelivered 3 times (and now once more), one for the first time.
        await exchange.publish(
            aio_pika.Message(
                body, correlation_id="poison", reply_to=replies.name, headers={"x-redeliveries": 3}
            ),
            routing_key="t.echo",
        )
        await exchange.publish(
            aio_pika.Message(
                msgspec.json.encode(Ask(2)), correlation_id="ok", reply_to=replies.name
            ),
            routing_key="t.echo",
        )
        await _redeliver(amqp_url, queue_name)
        await _redeliver(amqp_url, queue_name)
        worker = await start_worker(amqp_url, queue_name, topology, service)
        try:
            async with replies.iterator(timeout=10) as it:
                reply = await anext(it)
                await reply.ack()
        finally:
            await worker.stop()
    # The one under the limit was served once (counted, re-queued, handled); the other
    # dead-lettered with the worker's reason, not handled.
    assert reply.correlation_id == "ok"
    assert msgspec.json.decode(reply.body, type=dict) == {"result": {"value": 2}}
    assert service.handled == [2]
    dead = await dead_letters(amqp_url, topology)
    assert [m.correlation_id for m in dead] == ["poison"]
    assert dead[0].headers["x-dead-letter-reason"] == "delivery_limit"
    assert dead[0].headers["x-dead-letter-queue"] == queue_name
    assert dead[0].headers["x-redeliveries"] == 3


async def test_every_dead_letter_says_why(
    worker: RpcWorker, amqp_url: str, topology: Topology, queue_name: str
) -> None:
    await _request(amqp_url, topology, "t.echo", b"{not json")
    await _request(amqp_url, topology, "t.crash", msgspec.json.encode(Ask(1)))
    await _request(amqp_url, topology, "t.echo", msgspec.json.encode({"value": "x"}))
    dead = await dead_letters(amqp_url, topology)
    reasons = sorted(str(m.headers["x-dead-letter-reason"]) for m in dead)
    assert reasons == ["bad_request", "bad_request", "internal"]
    for message in dead:
        assert message.headers["x-dead-letter-detail"]
        assert message.headers["x-dead-letter-queue"] == queue_name
        assert message.expiration is None  # a dead letter does not expire on its way


async def test_unroutable_requests_fail_fast_and_are_kept(
    worker: RpcWorker, client: AmqpRpcClient, amqp_url: str, topology: Topology
) -> None:
    with pytest.raises(RpcUnroutable):
        await client.call("t.nobody", Ask(3), dict)
    # The returned request is kept, with its reason, once the client has published it there.
    async with asyncio.timeout(5):
        while not (dead := await dead_letters(amqp_url, topology)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert [m.routing_key for m in dead] == ["t.nobody"]
    assert dead[0].headers["x-dead-letter-reason"] == "unroutable"
    assert msgspec.json.decode(dead[0].body) == {"value": 3, "block": False}
