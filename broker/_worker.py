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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.abc
import aiormq.exceptions
import msgspec
from aiormq.abc import DeliveredMessage
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pamqp.commands import Basic

from ._deadletter import counted_redelivery, dead_letter
from ._dependency import dependency_unavailable
from ._errors import HandlerError
from ._faults import FaultRule, Faults, answer_control, control_queue_name, instance
from ._handling import (
    DELIVERY_LIMIT,
    TEXT_HEADERS,
    Handling,
    heartbeat_url,
    unavailable_reply,
)
from ._metrics import (
    RPC_DEAD_LETTERED,
    RPC_QUEUE_WAIT,
    exemplar,
    labelled,
)
from ._publish import publish
from ._telemetry import (
    TRACER,
    messaging_attributes,
    records_nothing,
    wait_attributes,
)
from ._transit import BrokerRoundTrip, observe, split, transit_attributes
from ._wire import (
    CONTENT_TYPE,
    HANDLER_NS,
    QUEUE_WAIT_NS,
    SENT_AT_NS,
    TIMEOUT_MS,
    Topology,
    encode_error,
    encode_result,
    header_int,
)

Req = TypeVar("Req")

log = logging.getLogger(__name__)

QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True, slots=True)
class _Route(Generic[Req]):
    request_type: type[Req]
    handler: Callable[[Req], Awaitable[Any]]


class _Reject(Exception):
    """Dead-letter the request; reply with this error type if the caller can be reached."""

    def __init__(self, error_type: str, message: str, *, reply: bool = True) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.reply = reply


class _ReplyRefused(Exception):
    """The broker nacked a reply: its request must not be acked as answered."""


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
    ) -> None:
        """``faults=True`` listens for fault-injection rules on the control exchange.

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
        self._tracer = trace.get_tracer(TRACER, tracer_provider=tracer_provider)
        self._tracer_provider = tracer_provider
        self._prefetch = prefetch
        self._topology = topology or Topology()
        self._queue_type = queue_type
        self._confirms = publisher_confirms
        self._grace = grace
        self._reconnect_interval = reconnect_interval
        self._routes: dict[str, _Route[Any]] = {}
        self._inflight: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._amqp: aiormq.abc.AbstractChannel | None = None  # the consuming channel itself
        self._consuming = asyncio.Lock()  # one consumer at a time (see _consume_locked)
        self._recovery: asyncio.Task[None] | None = None
        self._faults = Faults(queue, prefetch) if faults else None
        self._connection_name = connection_name or f"{queue} {instance()}"
        self._consumer_tag: str | None = None
        self._broker_rtt = BrokerRoundTrip()  # transit apart from dwell (broker/_transit.py)
        self._measuring: contextlib.AsyncExitStack | None = None

    def register(
        self, method: str, request_type: type[Req], handler: Callable[[Req], Awaitable[Any]]
    ) -> None:
        """Serve ``method``: decode requests as ``request_type`` and await ``handler`` on them.

        The handler returns the result (JSON-encodable) or raises :class:`HandlerError`.
        """
        if self._queue is not None:
            raise RuntimeError("register methods before start()")
        if self._faults is not None:
            handler = self._faults.wrap(method, handler)
        self._routes[method] = _Route(request_type, handler)

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
        return tuple(self._routes)

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
            assert isinstance(channel, aio_pika.abc.AbstractRobustChannel)
            channel.reopen_callbacks.add(self._on_channel_reopen)
            await self._consume()
            if self._faults is not None:
                await self._listen_for_faults(channel)
            self._measuring = contextlib.AsyncExitStack()
            await self._measuring.enter_async_context(self._broker_rtt.measuring(self._connection))
        except BaseException:
            await self._connection.close()
            raise
        log.info(
            "worker consuming queue=%s methods=%s prefetch=%d",
            self._queue_name,
            ",".join(self._routes),
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
        for method in self._routes:
            await self._queue.bind(exchange, routing_key=method)

    async def _listen_for_faults(self, channel: aio_pika.abc.AbstractChannel) -> None:
        """A private queue on the control exchange; malformed rules are dead-lettered."""
        control = await channel.declare_exchange(
            self._topology.control_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            control_queue_name(self._topology.control_exchange, self._queue_name),
            exclusive=True,
            auto_delete=True,
            arguments={"x-dead-letter-exchange": self._topology.dead_letter_exchange},
        )
        await queue.bind(control)
        await queue.consume(self._on_control)

    async def _on_control(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        assert self._faults is not None
        assert self._channel is not None
        try:
            rule = msgspec.json.decode(message.body, type=FaultRule)
        except msgspec.DecodeError as exc:
            log.warning("fault rule dead-lettered: %s", exc)
            await message.reject(requeue=False)
            return
        if self._faults.matches(rule):
            before = self._faults.prefetch
            self._faults.apply(rule)
            if self._faults.prefetch != before:
                await self._set_prefetch(self._faults.prefetch)
            log.warning(
                "fault rules now queue=%s prefetch=%d rules=%s",
                self._queue_name,
                self._faults.prefetch,
                msgspec.json.encode(self._faults.rules).decode(),
            )
            await answer_control(self._channel, self._faults, message)
        await message.ack()

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
            _done, late = await asyncio.wait(set(self._inflight), timeout=self._grace)
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
            await message.channel.basic_nack(_tag(message), requeue=True)
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
                    await message.channel.basic_reject(_tag(message), requeue=False)
        finally:
            self._inflight.discard(task)

    async def _handle(self, message: DeliveredMessage, settled: list[bool]) -> None:
        received_ns = time.time_ns()
        method = message.routing_key or ""
        properties = message.header.properties
        headers = properties.headers or {}
        sent_at = header_int(headers, SENT_AT_NS)
        queue_wait_ns = max(0, received_ns - sent_at) if sent_at is not None else 0
        # The caller's PRODUCER span is the parent of the wait and of the processing.
        parent = propagate.extract(headers, getter=TEXT_HEADERS)
        caller = trace.get_current_span(parent)
        if records_nothing(self._tracer_provider, caller.get_span_context()):
            # Not sampled, or no SDK: no span would be recorded, so none is made. The caller's
            # context is still the current one: its trace id for the log lines, and its
            # sampling decision for the handler's own spans (not new root traces).
            token = otel_context.attach(parent)
            try:
                await self._run(
                    message,
                    method,
                    caller,
                    sent_at,
                    received_ns,
                    wait_ns=queue_wait_ns,
                    settled=settled,
                )
            finally:
                otel_context.detach(token)
            return
        attributes = messaging_attributes(
            "process", self._topology.exchange, method, properties.correlation_id, message.body
        )
        attributes["messaging.destination.subscription.name"] = self._queue_name
        if sent_at is not None and caller.get_span_context().is_valid:
            # Only under the caller's span: without one it would be a trace of its own.
            # Wall clocks of two hosts: clamped so that skew cannot make it negative.
            wait = self._tracer.start_span(
                f"queue wait {method}",
                context=parent,
                start_time=min(sent_at, received_ns),
                attributes=wait_attributes(
                    method, properties.correlation_id, "rpc.queue_wait_ms", queue_wait_ns
                )
                | transit_attributes(
                    *split(headers, sent_at, queue_wait_ns, self._broker_rtt.half_ns())
                ),
            )
            wait.end(end_time=received_ns)
        with self._tracer.start_as_current_span(
            f"process {self._queue_name} {method}",
            context=parent,
            kind=SpanKind.CONSUMER,
            start_time=received_ns,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            await self._run(
                message, method, span, sent_at, received_ns, wait_ns=queue_wait_ns, settled=settled
            )

    async def _run(
        self,
        message: DeliveredMessage,
        method: str,
        span: trace.Span,
        sent_at: int | None,
        received_ns: int,
        *,
        wait_ns: int,
        settled: list[bool],
    ) -> None:
        if sent_at is not None:
            labelled(RPC_QUEUE_WAIT, method).observe(wait_ns / 1e9, exemplar(span))
            headers = message.header.properties.headers or {}
            parts = split(headers, sent_at, wait_ns, self._broker_rtt.half_ns())
            observe(method, *parts, exemplar(span))
        with Handling(method, span, "amqp", wait_ns) as handling:
            handling.outcome = await self._complete(
                message, method, sent_at, received_ns, wait_ns, settled=settled
            )

    async def _complete(
        self,
        message: DeliveredMessage,
        method: str,
        sent_at: int | None,
        received_ns: int,
        queue_wait_ns: int,
        *,
        settled: list[bool],
    ) -> str:
        """Dispatch, reply, and ack or dead-letter; the outcome."""
        started = time.monotonic_ns()
        try:
            body, outcome = await self._dispatch_message(message, method, sent_at, received_ns)
        except _Reject as reject:
            RPC_DEAD_LETTERED.labels(self._queue_name, reject.error_type).inc()
            log.warning(
                "rpc dead-lettered method=%s correlation_id=%s reason=%s: %s",
                method,
                message.header.properties.correlation_id,
                reject.error_type,
                reject.message,
            )
            dlx, queue = self._topology.dead_letter_exchange, self._queue_name
            await dead_letter(message, dlx, queue, reject.error_type, reject.message)
            if reject.reply and message.header.properties.reply_to:
                error = encode_error(reject.error_type, reject.message)
                elapsed = time.monotonic_ns() - started
                await self._reply(message, error, elapsed, queue_wait_ns, ack=True)
            else:
                await message.channel.basic_ack(_tag(message))
            settled[0] = True
            return reject.error_type
        if body is None:
            # The deadline passed while handling: the caller has its timeout already.
            correlation_id = message.header.properties.correlation_id
            log.warning("rpc late method=%s correlation_id=%s", method, correlation_id)
            await message.channel.basic_ack(_tag(message))
        else:
            await self._reply(message, body, time.monotonic_ns() - started, queue_wait_ns, ack=True)
        settled[0] = True
        return outcome

    async def _dispatch_message(
        self,
        message: DeliveredMessage,
        method: str,
        sent_at: int | None,
        received_ns: int,
    ) -> tuple[bytes | None, str]:
        """:meth:`_dispatch` for a message: one without ``reply_to`` cannot be answered."""
        if not message.header.properties.reply_to:
            raise _Reject("bad_request", "request has no reply_to", reply=False)
        timeout_ms = header_int(message.header.properties.headers, TIMEOUT_MS)
        return await self._dispatch(method, message.body, sent_at, timeout_ms, received_ns)

    async def _dispatch(
        self,
        method: str,
        body: bytes,
        sent_at: int | None,
        timeout_ms: int | None,
        received_ns: int,
    ) -> tuple[bytes | None, str]:
        """Decode, run the handler, encode: the reply body (None when the deadline passed
        first) and the outcome; raises :class:`_Reject`. Every transport (AMQP here, HTTP in
        :mod:`broker._http`) comes through this one function."""
        route = self._routes.get(method)
        if route is None:
            raise _Reject("unknown_method", f"no method {method!r} on {self._queue_name}")
        remaining: float | None = None
        if sent_at is not None and timeout_ms is not None:
            remaining = (sent_at + timeout_ms * 1_000_000 - received_ns) / 1e9
            if remaining <= 0:
                raise _Reject("expired", "deadline passed before delivery", reply=False)
        try:
            request = msgspec.json.decode(body, type=route.request_type)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise _Reject("bad_request", f"malformed request: {exc}") from None
        try:
            async with asyncio.timeout(remaining):
                result = await route.handler(request)
        except TimeoutError:
            return None, "late"
        except HandlerError as exc:
            return encode_error(exc.error_type, exc.message), exc.error_type
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker is being torn down
            # The handler itself raised CancelledError: without this the request would hold
            # a prefetch slot, unacked, until the channel closed.
            raise _Reject("internal", "handler was cancelled") from None
        except Exception as exc:
            if dependency_unavailable(exc):  # an outage, not a bad request: answered, acked
                return unavailable_reply(method, exc)
            log.exception("rpc handler failed method=%s", method)
            raise _Reject("internal", f"{type(exc).__name__} in handler") from exc
        try:
            return encode_result(result), "ok"
        except (TypeError, msgspec.EncodeError) as exc:
            raise _Reject("internal", f"unencodable result: {exc}") from exc

    async def _reply(
        self,
        message: DeliveredMessage,
        body: bytes,
        handler_ns: int,
        queue_wait_ns: int,
        *,
        ack: bool,
    ) -> None:
        """Send the reply, then settle the request: ack it (``ack``) or reject it to the
        dead letters. Without confirms the reply and the settlement go in one write, in that
        order; with them, the settlement waits for the reply's confirmation."""
        headers: dict[str, Any] = {
            HANDLER_NS: handler_ns,
            QUEUE_WAIT_NS: queue_wait_ns,
            SENT_AT_NS: time.time_ns(),  # the reply's own send time: the caller's reply wait
        }
        request = message.header.properties
        properties = Basic.Properties(
            content_type=CONTENT_TYPE, correlation_id=request.correlation_id, headers=headers
        )
        tag, reply_to = _tag(message), request.reply_to or ""
        # Not mandatory: a caller that went away is not an error here.
        channel = cast(aiormq.Channel, message.channel)  # the concrete one takes wait=
        if not channel.publisher_confirms:
            settle = Basic.Ack(tag) if ack else Basic.Reject(tag, requeue=False)
            await publish(channel, body, routing_key=reply_to, properties=properties, then=settle)
            return
        try:
            await channel.basic_publish(
                body, routing_key=reply_to, properties=properties, wait=False
            )
        except aiormq.exceptions.DeliveryError as exc:  # a nack
            # Not acked as answered: the request is dead-lettered instead (_on_message).
            raise _ReplyRefused("the broker refused the reply (nack)") from exc
        if ack:
            await channel.basic_ack(tag)
        else:
            await channel.basic_reject(tag, requeue=False)


def _tag(message: DeliveredMessage) -> int:
    """The delivery tag (a consumer's deliveries always carry one)."""
    tag = message.delivery_tag
    assert tag is not None
    return tag
