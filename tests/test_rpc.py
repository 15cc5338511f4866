"""The RPC layer against the real RabbitMQ: round trips, every failure mode, recovery, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import aio_pika
import aiormq
import aiormq.exceptions
import msgspec
import pytest
from pamqp.commands import Basic
from prometheus_client import REGISTRY

from broker.rpc import (
    AmqpRpcClient,
    NotFound,
    RpcNotFound,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
    RpcWorker,
    Topology,
)
from broker.rpc.publish import publish
from broker.telemetry import metrics_app
from tests.conftest import log_waiters


class Ask(msgspec.Struct, forbid_unknown_fields=True):
    value: int
    block: bool = False


class Answer(msgspec.Struct):
    value: int


class Blob(msgspec.Struct):
    data: str


class Service:
    """Test handlers that record what they ran and can be held mid-request."""

    def __init__(self) -> None:
        self.handled: list[int] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def echo(self, ask: Ask) -> Answer:
        self.handled.append(ask.value)
        if ask.block:
            self.entered.set()
            await self.release.wait()
        return Answer(ask.value)

    async def missing(self, ask: Ask) -> Answer:
        raise NotFound(f"no thing {ask.value}")

    async def crash(self, ask: Ask) -> Answer:
        raise ZeroDivisionError("boom")

    async def cancel(self, ask: Ask) -> Answer:
        raise asyncio.CancelledError

    async def reverse(self, blob: Blob) -> Blob:
        return Blob(blob.data[::-1])


@pytest.fixture
def service() -> Service:
    return Service()


async def start_worker(
    amqp_url: str,
    queue_name: str,
    topology: Topology,
    service: Service,
    *,
    prefetch: int = 8,
    confirms: bool = False,
) -> RpcWorker:
    worker = RpcWorker(
        amqp_url,
        queue_name,
        prefetch=prefetch,
        topology=topology,
        grace=5,
        publisher_confirms=confirms,
    )
    worker.register("t.echo", Ask, service.echo)
    worker.register("t.missing", Ask, service.missing)
    worker.register("t.crash", Ask, service.crash)
    worker.register("t.cancel", Ask, service.cancel)
    worker.register("t.reverse", Blob, service.reverse)
    await worker.start()
    return worker


@pytest.fixture
async def worker(
    amqp_url: str, queue_name: str, topology: Topology, service: Service
) -> AsyncIterator[RpcWorker]:
    worker = await start_worker(amqp_url, queue_name, topology, service)
    yield worker
    service.release.set()
    await worker.stop()


@pytest.fixture
async def client(amqp_url: str, topology: Topology) -> AsyncIterator[AmqpRpcClient]:
    async with AmqpRpcClient(amqp_url, timeout=2.0, topology=topology) as client:
        yield client


async def dead_letters(
    amqp_url: str, topology: Topology
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in the test's dead-letter queue, consumed."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.dead_letter_queue, passive=True)
        messages = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            messages.append(message)
        return messages


async def test_round_trip(worker: RpcWorker, client: AmqpRpcClient) -> None:
    assert await client.call("t.echo", Ask(7), Answer) == Answer(7)


async def test_bodies_larger_than_a_frame_arrive_whole(
    worker: RpcWorker, client: AmqpRpcClient
) -> None:
    # RabbitMQ's frame_max is 128 KiB: each body here goes as three or more body frames, and
    # any frame lost, repeated or out of order changes the text.
    data = "".join(f"{i:07d}," for i in range(40_000))  # 320,000 characters, all different
    assert await client.call("t.reverse", Blob(data), Blob) == Blob(data[::-1])


@pytest.mark.parametrize("confirms", [False, True], ids=["one-write", "reply-confirms"])
async def test_every_request_is_settled_with_its_answer(
    amqp_url: str,
    queue_name: str,
    topology: Topology,
    service: Service,
    *,
    client: AmqpRpcClient,
    confirms: bool,
) -> None:
    """Answered requests are acked and failed ones rejected (with reply confirms, once the reply
    is confirmed): when the worker's channel closes, none of them goes back to the queue (an
    unsettled one would)."""
    worker = await start_worker(amqp_url, queue_name, topology, service, confirms=confirms)
    answers = await asyncio.gather(
        *(client.call("t.echo", Ask(i), Answer) for i in range(50)),
        *(client.call("t.crash", Ask(i), Answer) for i in range(5)),
        return_exceptions=True,
    )
    assert answers[:50] == [Answer(i) for i in range(50)]
    assert all(isinstance(a, RpcRemoteError) for a in answers[50:])
    await worker.stop()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        assert queue.declaration_result.message_count == 0
    dead = await dead_letters(amqp_url, topology)
    assert [m.routing_key for m in dead] == ["t.crash"] * 5


class _FullQueue(asyncio.Queue[object]):
    """A write queue that is full and says when a put starts waiting for room."""

    def __init__(self) -> None:
        super().__init__(maxsize=1)
        self.put_nowait(None)
        self.waiting = asyncio.Event()

    async def put(self, item: object) -> None:
        self.waiting.set()
        await super().put(item)


async def test_a_publish_held_by_a_full_write_queue_fails_when_the_channel_closes(
    amqp_url: str, vhost: str
) -> None:
    """A lost connection's writer takes nothing more: a publish waiting for room in its full
    write queue fails when the channel closes, rather than hang until its caller's timeout."""
    connection = await aiormq.connect(f"{amqp_url.rstrip('/')}/{vhost}")
    channel = cast(aiormq.Channel, await connection.channel(publisher_confirms=False))
    stuck = _FullQueue()
    channel.write_queue = stuck  # full, and nothing takes from it: as when the writer stopped
    publishing = asyncio.create_task(
        publish(channel, b"{}", routing_key="t.nowhere", properties=Basic.Properties())
    )
    await stuck.waiting.wait()  # the publish waits for room; now the broker closes the channel
    closer = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: connection closed"
    )
    assert await closer.wait() == 0
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
        async with asyncio.timeout(10):
            await publishing
    await connection.close()


async def test_correlation_ids_never_cross(worker: RpcWorker, client: AmqpRpcClient) -> None:
    results = await asyncio.gather(*(client.call("t.echo", Ask(i), Answer) for i in range(200)))
    assert [r.value for r in results] == list(range(200))
    assert client.pending == 0


async def test_not_found_reply(worker: RpcWorker, client: AmqpRpcClient) -> None:
    with pytest.raises(RpcNotFound) as caught:
        await client.call("t.missing", Ask(3), Answer)
    assert caught.value.error_type == "not_found"
    assert "no thing 3" in str(caught.value)


async def test_handler_crash_replies_and_dead_letters(
    worker: RpcWorker, client: AmqpRpcClient, amqp_url: str, topology: Topology
) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.crash", Ask(1), Answer)
    assert caught.value.error_type == "internal"
    assert "boom" not in str(caught.value)  # no internals leak to the caller
    dead = await dead_letters(amqp_url, topology)
    assert [m.routing_key for m in dead] == ["t.crash"]


async def test_handler_raising_cancelled_does_not_stall_the_worker(
    amqp_url: str, queue_name: str, topology: Topology, service: Service, client: AmqpRpcClient
) -> None:
    worker = await start_worker(amqp_url, queue_name, topology, service, prefetch=1)
    try:
        with pytest.raises(RpcRemoteError) as caught:
            await client.call("t.cancel", Ask(1), Answer)
        assert caught.value.error_type == "internal"
        # The only prefetch slot was given back: the next request is served.
        assert await client.call("t.echo", Ask(2), Answer) == Answer(2)
    finally:
        await worker.stop()


async def test_invalid_request_replies_and_dead_letters(
    worker: RpcWorker, client: AmqpRpcClient, amqp_url: str, topology: Topology, queue_name: str
) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.echo", {"value": "seven"}, Answer)
    assert caught.value.error_type == "bad_request"
    assert "Expected `int`" in caught.value.remote_message
    dead = await dead_letters(amqp_url, topology)
    assert [msgspec.json.decode(m.body) for m in dead] == [{"value": "seven"}]
    # The worker's own reason (issue 19), not RabbitMQ's "rejected".
    assert dead[0].headers["x-dead-letter-reason"] == "bad_request"
    assert "Expected `int`" in str(dead[0].headers["x-dead-letter-detail"])
    assert dead[0].headers["x-dead-letter-queue"] == queue_name


async def test_malformed_body_replies_and_dead_letters(
    worker: RpcWorker, amqp_url: str, topology: Topology
) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(topology.exchange)
        await exchange.publish(
            aio_pika.Message(b"{not json", correlation_id="m1", reply_to=replies.name),
            routing_key="t.echo",
        )
        async with replies.iterator() as it:
            reply = await anext(it)
            await reply.ack()
    assert reply.correlation_id == "m1"
    error = msgspec.json.decode(reply.body)["error"]
    assert error["type"] == "bad_request"
    assert "malformed request" in error["message"]
    assert [m.body for m in await dead_letters(amqp_url, topology)] == [b"{not json"]


async def test_unknown_method_replies_and_dead_letters(
    worker: RpcWorker,
    client: AmqpRpcClient,
    amqp_url: str,
    queue_name: str,
    topology: Topology,
) -> None:
    # A binding left behind by an older worker version routes a method nobody serves now.
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        await queue.bind(topology.exchange, routing_key="t.retired")
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.retired", Ask(1), Answer)
    assert caught.value.error_type == "unknown_method"
    assert [m.routing_key for m in await dead_letters(amqp_url, topology)] == ["t.retired"]


async def test_unroutable_fails_fast(worker: RpcWorker, client: AmqpRpcClient) -> None:
    started = time.monotonic()
    with pytest.raises(RpcUnroutable):
        await client.call("t.nobody", Ask(1), Answer, timeout=5)
    assert time.monotonic() - started < 1.0
    assert client.pending == 0
    # The channel stays usable: the returned message was read off it whole.
    assert await client.call("t.echo", Ask(7), Answer) == Answer(7)


async def test_unroutable_fails_fast_with_confirms(
    amqp_url: str, topology: Topology, worker: RpcWorker
) -> None:
    async with AmqpRpcClient(amqp_url, topology=topology, publisher_confirms=True) as client:
        started = time.monotonic()
        with pytest.raises(RpcUnroutable):
            await client.call("t.nobody", Ask(1), Answer, timeout=5)
        assert time.monotonic() - started < 1.0
        assert await client.call("t.echo", Ask(7), Answer) == Answer(7)


async def test_timeout(worker: RpcWorker, client: AmqpRpcClient, service: Service) -> None:
    started = time.monotonic()
    with pytest.raises(RpcTimeout):
        await client.call("t.echo", Ask(1, block=True), Answer, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.3
    assert client.pending == 0


async def test_expired_request_is_never_handled(
    amqp_url: str,
    queue_name: str,
    topology: Topology,
    service: Service,
    client: AmqpRpcClient,
) -> None:
    worker = await start_worker(amqp_url, queue_name, topology, service, prefetch=1)
    try:
        held = asyncio.create_task(client.call("t.echo", Ask(1, block=True), Answer))
        await service.entered.wait()
        # The only slot is busy: this one waits in the queue past its deadline.
        with pytest.raises(RpcTimeout):
            await client.call("t.echo", Ask(2), Answer, timeout=0.2)
        service.release.set()
        assert await held == Answer(1)
        # FIFO: once 3 is handled, 2 has been dealt with too.
        assert await client.call("t.echo", Ask(3), Answer) == Answer(3)
        assert service.handled == [1, 3]
    finally:
        await worker.stop()
    dead = await dead_letters(amqp_url, topology)
    assert [msgspec.json.decode(m.body)["value"] for m in dead] == [2]


async def test_no_broker_connection_fails_fast(topology: Topology) -> None:
    with pytest.raises(OSError):  # noqa: PT011 - any refusal is right; it must not hang
        await AmqpRpcClient("amqp://guest:guest@127.0.0.1:1/", topology=topology).connect()


@pytest.mark.own_vhost  # it closes every connection of its vhost: other tests run meanwhile
async def test_connection_loss_fails_pending_calls_then_recovers(
    worker: RpcWorker, amqp_url: str, topology: Topology, service: Service, vhost: str
) -> None:
    # Reconnecting after 3 s (not 1): rabbitmqctl itself can take a second or more on a busy
    # machine, and the client must still be down when the test asks it.
    client = AmqpRpcClient(amqp_url, timeout=2.0, topology=topology, reconnect_interval=3.0)
    async with client:
        await _lose_the_connection_and_recover(client, service, vhost)


async def _lose_the_connection_and_recover(
    client: AmqpRpcClient, service: Service, vhost: str
) -> None:
    pending = [
        asyncio.create_task(client.call("t.echo", Ask(i, block=True), Answer, timeout=10))
        for i in range(5)
    ]
    await service.entered.wait()
    started = time.monotonic()
    closer = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "test: connection loss"
    )
    assert await closer.wait() == 0
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, RpcUnavailable) for r in results), results
    assert time.monotonic() - started < 3
    with pytest.raises(RpcUnavailable):
        await client.ping()
    service.release.set()
    await asyncio.wait_for(client.wait_ready(), 10)
    # The worker's robust connection has recovered its consumer too.
    assert await client.call("t.echo", Ask(42), Answer, timeout=10) == Answer(42)
    # And an unroutable call still fails at once on the reopened channel.
    started = time.monotonic()
    with pytest.raises(RpcUnroutable):
        await client.call("t.nobody", Ask(1), Answer, timeout=5)
    assert time.monotonic() - started < 1.0


async def test_graceful_stop_finishes_in_flight(
    amqp_url: str,
    queue_name: str,
    topology: Topology,
    service: Service,
    client: AmqpRpcClient,
) -> None:
    worker = await start_worker(amqp_url, queue_name, topology, service)
    held = asyncio.create_task(client.call("t.echo", Ask(9, block=True), Answer))
    await service.entered.wait()
    # stop() drains: while a request is in flight it does not return (nor close under it).
    with log_waiters("broker._worker", "worker draining 1 in-flight") as (draining,):
        stopping = asyncio.create_task(worker.stop())
        async with asyncio.timeout(5):
            await draining.seen.wait()
    assert not stopping.done()
    assert worker.in_flight == 1
    service.release.set()
    await stopping
    assert await held == Answer(9)
    assert worker.in_flight == 0


async def test_cancelled_call_is_not_counted_as_ok(
    worker: RpcWorker, client: AmqpRpcClient, service: Service
) -> None:
    def samples(outcome: str) -> float:
        labels = {"method": "t.echo", "outcome": outcome}
        return REGISTRY.get_sample_value("rpc_client_duration_seconds_count", labels) or 0.0

    ok_before, cancelled_before = samples("ok"), samples("cancelled")
    call = asyncio.create_task(client.call("t.echo", Ask(1, block=True), Answer))
    await service.entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert samples("cancelled") == cancelled_before + 1
    assert samples("ok") == ok_before
    assert client.pending == 0


async def test_unencodable_request_leaves_no_pending_call(
    worker: RpcWorker, client: AmqpRpcClient
) -> None:
    with pytest.raises(TypeError):
        await client.call("t.echo", {"value": object()}, Answer)
    assert client.pending == 0


async def test_worker_probes_follow_the_consumer(
    amqp_url: str, queue_name: str, topology: Topology, service: Service, aiohttp_client: Any
) -> None:
    worker = RpcWorker(amqp_url, queue_name, topology=topology)
    worker.register("t.echo", Ask, service.echo)
    http = await aiohttp_client(metrics_app(lambda: worker.ready))
    assert (await http.get("/healthz")).status == 200
    assert (await http.get("/readyz")).status == 503  # not consuming yet
    await worker.start()
    response = await http.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready"}
    await worker.stop()
    assert (await http.get("/readyz")).status == 503
    assert (await http.get("/healthz")).status == 200
