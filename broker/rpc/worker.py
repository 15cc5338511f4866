"""The worker's side of RPC: consume a queue, dispatch by method, reply, ack.

A worker owns one queue (``rpc.episode``, ``rpc.stream``) bound to the ``rpc`` exchange with one
routing key per registered method, on a channel whose prefetch is its concurrency. Handlers run
concurrently (aiormq starts a task per delivery). The reply is published before the request is
acked, so a worker that dies mid-request leaves the request to be redelivered, never lost.

What is not a valid request never loops: a malformed body, an unknown method or a request
without ``reply_to`` gets an error reply where possible and is rejected without requeue, which
dead-letters it through ``rpc.dlx`` into ``rpc.dead`` for an operator to read. A request whose
deadline (``x-sent-at-ns`` + ``x-timeout-ms``) has passed is dead-lettered without running:
its caller has already given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import aio_pika
import aio_pika.abc
import aiormq.abc
from aiormq.abc import DeliveredMessage
from opentelemetry import trace
from pamqp.commands import Basic

from broker.rpc.cancel import listen_for_cancels
from broker.rpc.deadletter import counted_redelivery
from broker.rpc.delivery import (
    DELIVERY_LIMIT,
    heartbeat_url,
    rejected,
    reply,
    tag,
)
from broker.rpc.faults import Faults, instance, listen_for_rules
from broker.rpc.observe import DeliveryTelemetry
from broker.rpc.router import HandlerMiddleware, Reject, Router
from broker.rpc.transit import BrokerRoundTrip
from broker.rpc.wire import TIMEOUT_MS, Topology, header_int
from broker.telemetry.tracing import TRACER

Req = TypeVar("Req")

log = logging.getLogger("broker._worker")  # its name before broker/ had packages

QueueType = Literal["classic", "quorum"]


class RpcWorker:
    """Serves the registered methods from one queue.

    ``register()`` the methods, then ``async with worker:`` (or ``start()``/``stop()``). Stopping
    cancels the consumer, lets in-flight requests finish (up to ``grace`` seconds), then closes.
    """

    def __init__(
        self,
        url: str,
        queue: str,
        *,
        prefetch: int = 32,
        topology: Topology | None = None,
        queue_type: QueueType = "classic",
        publisher_confirms: bool = False,
        grace: float = 10.0,
        reconnect_interval: float = 1.0,
        tracer_provider: trace.TracerProvider | None = None,
        faults: bool = False,
        connection_name: str | None = None,
        middlewares: Sequence[HandlerMiddleware] = (),
    ) -> None:
        """``faults=True`` listens for fault-injection rules on the control exchange (the rules
        are a handler middleware, outermost); ``middlewares`` wrap every handler, on every
        transport (:class:`Router`).

        ``connection_name``: what the broker's management UI calls the connection (default:
        ``<queue> <host>-<pid>``); services pass ``<service> <queue> <host>-<pid>``.

        ``publisher_confirms=True`` waits for the broker to confirm each reply before acking its
        request, and dead-letters the request if the broker nacks the reply. Off by default: a
        reply goes to a direct reply-to consumer, not a queue, the ack follows it on the same
        channel, and a lost connection redelivers the request either way; the confirmations
        cost throughput in every make bench run (docs/adr/publisher-confirms-off.md).
        """
        self._url = url
        self._queue_name = queue
        self.tracer = trace.get_tracer(TRACER, tracer_provider=tracer_provider)
        self.tracer_provider = tracer_provider
        self._prefetch = prefetch
        self._topology = topology or Topology()
        self._queue_type = queue_type
        self._confirms = publisher_confirms
        self.grace = grace  # seconds in-flight requests get to finish, on every transport
        self._reconnect_interval = reconnect_interval
        self._inflight: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._amqp: aiormq.abc.AbstractChannel | None = None  # the consuming channel itself
        self._consuming = asyncio.Lock()  # one consumer at a time (see _consume_locked)
        self._recovery: asyncio.Task[None] | None = None
        self._faults = Faults(queue, prefetch) if faults else None
        if self._faults is not None:
            middlewares = (self._faults.wrap, *middlewares)
        # The methods and the dispatch, shared with the other transports (rpc_http_app).
        self.router = Router(queue, middlewares)
        self._connection_name = connection_name or f"{queue} {instance()}"
        self._consumer_tag: str | None = None
        self._broker_rtt = BrokerRoundTrip()  # transit apart from dwell (broker.rpc.transit)
        self._measuring: contextlib.AsyncExitStack | None = None
        # Each delivery: its telemetry around its completion, composed once here.
        self._handle = DeliveryTelemetry(
            self.tracer,
            tracer_provider,
            self._topology.exchange,
            queue,
            self._broker_rtt,
            self._complete,
        )

    def register(
        self, method: str, request_type: type[Req], handler: Callable[[Req], Awaitable[Any]]
    ) -> None:
        """Serve ``method``: decode requests as ``request_type`` and await ``handler`` on them.

        The handler returns the result (JSON-encodable) or raises :class:`HandlerError`.
        """
        if self._queue is not None:
            raise RuntimeError("register methods before start()")
        self.router.register(method, request_type, handler)

    @property
    def ready(self) -> bool:
        """Consuming on an open channel: what a readiness probe asks."""
        return (
            not self._stopping
            and self._consumer_tag is not None
            and self._channel is not None
            and not self._channel.is_closed
        )

    @property
    def methods(self) -> tuple[str, ...]:
        """The registered methods, in registration order."""
        return self.router.methods

    @property
    def in_flight(self) -> int:
        """Requests being handled now."""
        return len(self._inflight)

    async def __aenter__(self) -> RpcWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, declare the topology and start consuming."""
        self._connection = await aio_pika.connect_robust(
            heartbeat_url(self._url),
            reconnect_interval=self._reconnect_interval,
            client_properties={"connection_name": self._connection_name},
        )
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        try:
            channel = await self._connection.channel(publisher_confirms=self._confirms)
            self._channel = channel
            await channel.set_qos(prefetch_count=self._prefetch)
            await self._declare(channel)
            router = self.router
            await listen_for_cancels(
                channel, self._topology, self._queue_name, router.methods, router.cancellations
            )
            assert isinstance(channel, aio_pika.abc.AbstractRobustChannel)
            channel.reopen_callbacks.add(self._on_channel_reopen)
            await self._consume()
            if self._faults is not None:
                await listen_for_rules(channel, self._topology, self._faults, self._set_prefetch)
            self._measuring = contextlib.AsyncExitStack()
            await self._measuring.enter_async_context(self._broker_rtt.measuring(self._connection))
        except BaseException:
            await self._connection.close()
            raise
        log.info(
            "worker consuming queue=%s methods=%s prefetch=%d",
            self._queue_name,
            ",".join(self.router.methods),
            self._prefetch,
        )

    async def _declare(self, channel: aio_pika.abc.AbstractChannel) -> None:
        """The exchanges, the dead-letter queue, this worker's queue and its bindings."""
        exchange = await channel.declare_exchange(
            self._topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        dlx = await channel.declare_exchange(
            self._topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        # Bounded, so that an overload (every expired request lands here) cannot fill the
        # broker; the oldest go first.
        dead = await channel.declare_queue(
            self._topology.dead_letter_queue,
            durable=True,
            arguments={"x-max-length": 100_000, "x-message-ttl": 7 * 24 * 3600 * 1000},
        )
        await dead.bind(dlx)
        self._queue = await channel.declare_queue(
            self._queue_name,
            durable=True,
            arguments={
                "x-queue-type": self._queue_type,
                "x-dead-letter-exchange": self._topology.dead_letter_exchange,
            },
        )
        for method in self.router.methods:
            await self._queue.bind(exchange, routing_key=method)

    async def _set_prefetch(self, prefetch: int) -> None:
        """A consumer keeps the prefetch it started with: consume again under the new one.

        Deliveries still unacked stay with the channel and are acked as usual.
        """
        assert self._channel is not None
        async with self._consuming:
            await self._channel.set_qos(prefetch_count=prefetch)
            await self._consume_locked()

    async def _consume(self) -> None:
        async with self._consuming:
            await self._consume_locked()

    async def _consume_locked(self) -> None:
        """Consume on aiormq's channel itself: an aio-pika message wrapped around every request
        and reply cost more CPU than the rest of the worker's path (docs/adr/own-rpc-layer.md).

        One consumer at a time (the caller holds ``_consuming``): a consumer of this worker still
        on the current channel is cancelled first, so that two fault rules or a rule and a
        reconnect cannot leave two consumers (and twice the prefetch) behind.
        """
        assert self._channel is not None
        amqp = await self._channel.get_underlay_channel()
        if self._consumer_tag is not None and self._amqp is amqp:
            await amqp.basic_cancel(self._consumer_tag)
        self._consumer_tag = None
        self._amqp = amqp
        amqp.on_consumer_cancel_callbacks.add(self._on_consumer_cancelled)
        consuming = await amqp.basic_consume(self._queue_name, self._on_message)
        self._consumer_tag = consuming.consumer_tag

    async def _on_channel_reopen(self, _channel: object) -> None:
        # aio-pika restores the consumers it made; this one is ours to restore.
        self._consumer_tag = None  # of the channel that went: not ready until consuming again
        if not self._stopping:
            self._keep_consuming()

    async def _on_consumer_cancelled(self, frame: Basic.Cancel) -> None:
        """The broker cancelled our consumer (the queue was deleted, say): not ready, and
        declare and consume again until it works."""
        if frame.consumer_tag != self._consumer_tag:
            return
        self._consumer_tag = None
        log.error("the broker cancelled the consumer of queue=%s", self._queue_name)
        if not self._stopping:
            self._keep_consuming()

    def _keep_consuming(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        """Declare the queue and consume again, backing off up to 30 s between tries."""
        delay = 0.5
        while not self._stopping and self._consumer_tag is None:
            try:
                async with self._consuming:
                    assert self._channel is not None
                    await self._declare(self._channel)
                    await self._consume_locked()
            except Exception as exc:  # noqa: BLE001 - whatever failed, recovery tries again
                log.warning("worker could not consume queue=%s: %r", self._queue_name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
            else:
                log.info("worker consuming again queue=%s", self._queue_name)

    def _on_reconnect(self, _connection: object) -> None:
        log.info("worker reconnected to the broker, queue=%s", self._queue_name)

    async def stop(self) -> None:
        """Stop consuming, finish in-flight requests, close the connection."""
        self._stopping = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._amqp is not None and self._consumer_tag is not None:
            # Bounded: a channel that is going cannot cancel, and closing the connection
            # stops deliveries anyway.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await self._amqp.basic_cancel(self._consumer_tag)
        if self._inflight:
            log.info("worker draining %d in-flight requests", len(self._inflight))
            _done, late = await asyncio.wait(set(self._inflight), timeout=self.grace)
            if late:
                # Unacked requests go back to the queue when the channel closes.
                log.warning("worker stopped with %d requests unfinished", len(late))
        if self._measuring is not None:
            await self._measuring.aclose()
        if self._connection is not None:
            await self._connection.close()

    # -- per message -----------------------------------------------------------------------

    async def _on_message(self, message: DeliveredMessage) -> None:
        if self._stopping:
            # Delivered as the consumer was being cancelled: leave it for another worker.
            await message.channel.basic_nack(tag(message), requeue=True)
            return
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        settled = [False]  # acked or rejected: a second answer would close the channel
        topology, queue = self._topology, self._queue_name
        try:
            if await counted_redelivery(
                message, topology.exchange, queue, topology.dead_letter_exchange, DELIVERY_LIMIT
            ):
                return
            await self._handle(message, settled)
        except Exception:
            # The reply or the ack failed (the channel is going): the broker redelivers the
            # request if it is still unacked; if it is not, rejecting it is all that is left.
            log.exception("rpc not completed method=%s", message.routing_key)
            if not settled[0]:
                with contextlib.suppress(Exception):
                    await message.channel.basic_reject(tag(message), requeue=False)
        finally:
            self._inflight.discard(task)

    async def _complete(  # noqa: PLR0917 - DeliveryTelemetry calls it, once per delivery
        self,
        message: DeliveredMessage,
        method: str,
        sent_at: int | None,
        received_ns: int,
        queue_wait_ns: int,
        settled: list[bool],
    ) -> str:
        """Dispatch, reply, and ack or dead-letter; the outcome."""
        started = time.monotonic_ns()
        try:
            body, outcome = await self._dispatch_message(message, method, sent_at, received_ns)
        except Reject as reject:
            dlx, queue = self._topology.dead_letter_exchange, self._queue_name
            await rejected(
                message, reject, queue, dlx, started=started, queue_wait_ns=queue_wait_ns
            )
            settled[0] = True
            return reject.error_type
        if body is None:
            # The deadline passed while handling (the caller has its timeout already), or the
            # caller gave up and said so: no reply, nobody waits for it.
            if outcome == "late":
                correlation_id = message.header.properties.correlation_id
                log.warning("rpc late method=%s correlation_id=%s", method, correlation_id)
            await message.channel.basic_ack(tag(message))
        else:
            await reply(message, body, time.monotonic_ns() - started, queue_wait_ns, ack=True)
        settled[0] = True
        return outcome

    async def _dispatch_message(
        self,
        message: DeliveredMessage,
        method: str,
        sent_at: int | None,
        received_ns: int,
    ) -> tuple[bytes | None, str]:
        """:meth:`Router.dispatch` for a message: one without ``reply_to`` cannot be answered."""
        if not message.header.properties.reply_to:
            raise Reject("bad_request", "request has no reply_to", reply=False)
        timeout_ms = header_int(message.header.properties.headers, TIMEOUT_MS)
        return await self.router.dispatch(
            method,
            message.body,
            sent_at,
            timeout_ms,
            received_ns,
            correlation_id=message.header.properties.correlation_id,
        )
