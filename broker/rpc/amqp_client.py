"""The caller's side of RPC over RabbitMQ: :class:`AmqpRpcClient` (the :class:`RpcClient`
interface is in :mod:`broker.rpc.client`).

One robust connection and one channel per process. Requests go to the ``rpc`` exchange with
the method as routing key; replies come back through direct reply-to on the same channel and
are matched to their call by correlation id. Every call is bounded by its timeout, and every
pending call fails at once when the channel or connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar, cast

import aio_pika
import aio_pika.abc
import aiormq.abc
import aiormq.exceptions
from opentelemetry import trace
from pamqp.commands import Basic

from broker.errors import RpcTimeout, RpcUnavailable, RpcUnroutable
from broker.rpc import unroutable
from broker.rpc.calls import Call, call_chain
from broker.rpc.cancel import announce_cancel
from broker.rpc.deadletter import keep_unroutable
from broker.rpc.observe import producer_span, reply_wait_span
from broker.rpc.publish import send_request
from broker.rpc.returns import watch_returns
from broker.rpc.topology import declare_for_callers
from broker.rpc.transit import TRANSIT_NS, BrokerRoundTrip
from broker.rpc.wire import (
    CONTENT_TYPE,
    DIRECT_REPLY_TO,
    HANDLER_NS,
    QUEUE_WAIT_NS,
    SENT_AT_NS,
    TIMEOUT_MS,
    Topology,
    encode,
    header_int,
)
from broker.telemetry.tracing import (
    TRACER,
    CallTiming,
    span_error,
)

T = TypeVar("T")


class _Incoming(NamedTuple):
    """A reply as the caller needs it: its headers and body (no aio-pika message wrapped)."""

    headers: Mapping[str, Any]
    body: bytes


log = logging.getLogger("broker._client")  # its name before broker/ had packages

# What aio-pika and aiormq raise when the channel or connection is gone or going.
_LINK_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class AmqpRpcClient:
    """:class:`RpcClient` over RabbitMQ request-reply (protocol v1).

    Use as ``async with AmqpRpcClient(url) as client:``; the connection recovers by itself
    after a broker restart, and calls made while it is down fail fast with
    :class:`RpcUnavailable` instead of waiting for it.

    ``publisher_confirms=True`` has the broker confirm every request, and a nack fail its call
    (RpcUnavailable). Off by default: an unroutable request fails its call at once either way
    (:mod:`broker.rpc.returns`), and the confirmations cost round-trip time and throughput
    (docs/adr/publisher-confirms-off.md).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 3.0,
        topology: Topology | None = None,
        publisher_confirms: bool = False,
        reconnect_interval: float = 1.0,
        tracer_provider: trace.TracerProvider | None = None,
        connection_name: str | None = None,
    ) -> None:
        self._url = url
        # What the broker's management UI calls the connection: whose, and which instance.
        self._connection_name = connection_name or (
            f"rpc-client {socket.gethostname()}-{os.getpid()}"
        )
        self._timeout = timeout
        self._tracer = trace.get_tracer(TRACER, tracer_provider=tracer_provider)
        self._topology = topology or Topology()
        self._confirms = publisher_confirms
        self._reconnect_interval = reconnect_interval
        # correlation id -> (method, future of the reply)
        self._pending: dict[str, tuple[str, asyncio.Future[tuple[_Incoming, int]]]] = {}
        self._ids = itertools.count()
        self._prefix = f"{os.getpid():x}.{id(self):x}."
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._amqp: aiormq.abc.AbstractChannel | None = None  # the current underlying channel
        self._ready = asyncio.Event()  # set while calls can be sent
        self._publishing: set[asyncio.Task[None]] = set()  # publishes awaiting confirmation
        self._keeping: set[asyncio.Task[None]] = set()  # unroutable requests on their way to keep
        self._broker_rtt = BrokerRoundTrip()  # sent as x-transit-ns (broker.rpc.transit)
        self._measuring = contextlib.AsyncExitStack()
        # Tracing, metrics and timing around each call (broker.rpc.calls), composed once here.
        self._call = call_chain(self._tracer, tracer_provider, self._round_trip)

    async def __aenter__(self) -> AmqpRpcClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection and the reply consumer; raise if the broker is unreachable."""
        self._connection = await aio_pika.connect_robust(
            self._url,
            reconnect_interval=self._reconnect_interval,
            client_properties={"connection_name": self._connection_name},
        )
        try:
            channel = await self._connection.channel(publisher_confirms=self._confirms)
            assert isinstance(channel, aio_pika.abc.AbstractRobustChannel)
            self._channel = channel
            channel.close_callbacks.add(self._on_channel_close)
            channel.reopen_callbacks.add(self._on_channel_reopen)
            await declare_for_callers(channel, self._topology)
            await self._consume_replies()
            await self._measuring.enter_async_context(self._broker_rtt.measuring(self._connection))
        except BaseException:
            await self._connection.close()
            raise

    async def close(self) -> None:
        """Fail pending calls and close the connection."""
        self._ready.clear()
        self._fail_pending("client closed")
        await self._measuring.aclose()
        for task in self._keeping:
            task.cancel()
        await asyncio.gather(*self._keeping, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    @property
    def pending(self) -> int:
        """Calls waiting for their reply."""
        return len(self._pending)

    async def ping(self) -> None:
        if not self._ready.is_set():
            raise RpcUnavailable("*", "not connected to the broker")

    async def consumers(self, queue: str) -> int:
        """How many consumers ``queue`` has now (0 if it does not exist): a passive declare on
        a channel of its own, which a missing queue closes."""
        await self.ping()
        assert self._connection is not None
        try:
            async with self._connection.channel() as channel:
                declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        except _LINK_ERRORS as exc:
            raise RpcUnavailable("*", "not connected to the broker") from exc
        return declared.declaration_result.consumer_count or 0

    async def wait_ready(self) -> None:
        """Return once calls can be sent (at once, or after the connection has recovered)."""
        await self._ready.wait()

    async def call(
        self,
        method: str,
        request: Any,
        result_type: type[T],
        *,
        timeout: float | None = None,
    ) -> T:
        timeout = self._timeout if timeout is None else timeout
        attributes = {"rpc.system": "rabbitmq", "rpc.method": method}
        result: T = await self._call(Call(method, request, result_type, timeout, attributes))
        return result

    async def _round_trip(self, call: Call) -> tuple[bytes, CallTiming]:
        method, request, timeout = call.method, call.request, call.timeout
        if not self._ready.is_set():
            raise RpcUnavailable(method, "not connected to the broker")
        body = encode(request)  # before the call is registered: a bad request leaves nothing
        correlation_id = self._prefix + str(next(self._ids))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[_Incoming, int]] = loop.create_future()
        self._pending[correlation_id] = (method, future)
        headers: dict[str, Any] = {
            SENT_AT_NS: time.time_ns(),
            TIMEOUT_MS: round(timeout * 1000),
            TRANSIT_NS: self._broker_rtt.half_ns(),
        }
        exchange = self._topology.exchange
        producer = producer_span(
            self._tracer, exchange, method, correlation_id, body=body, headers=headers
        )
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            correlation_id=correlation_id,
            message_id=correlation_id,  # unique already: aiormq need not make a UUID
            reply_to=DIRECT_REPLY_TO,
            # A request nobody picks up in time dies in the queue, not late.
            expiration=str(max(1, round(timeout * 1000))),
            headers=headers,
        )
        started = time.monotonic_ns()
        publish: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(timeout):
                if self._confirms:
                    # The publish and its confirmation run beside the wait for the reply: a
                    # reply proves the request was routed, so the caller never waits for the
                    # confirmation as well; a return or a nack fails the call as soon as it
                    # comes (_publish_done).
                    publish = loop.create_task(
                        self._publish(producer, exchange, method, body, properties)
                    )
                    self._publishing.add(publish)
                    publish.add_done_callback(
                        functools.partial(self._publish_done, method, future, producer)
                    )
                else:
                    # Handed to the connection's writer; a return comes as _on_returned.
                    await self._publish(producer, exchange, method, body, properties)
                reply, received_ns = await future
        except TimeoutError:
            raise RpcTimeout(method, timeout) from None
        except asyncio.CancelledError:
            # The caller gave up: its worker may stop (a task of its own: this one is cancelled).
            announce_cancel(self._keeping, self._amqp, self._topology, method, correlation_id)
            raise
        finally:
            self._pending.pop(correlation_id, None)
            if future.done() and not future.cancelled():
                # Failed by a lost connection while the publish failed too: the error raised
                # is the publish's; mark this one seen, or asyncio logs it as never retrieved.
                future.exception()
            elif publish is not None:
                publish.cancel()  # timed out or cancelled: a publish still queued goes too
        timing = CallTiming(
            method=method,
            round_trip_ns=time.monotonic_ns() - started,
            handler_ns=header_int(reply.headers, HANDLER_NS) or 0,
            queue_wait_ns=header_int(reply.headers, QUEUE_WAIT_NS) or 0,
            reply_wait_ns=0,
        )
        replied_at = header_int(reply.headers, SENT_AT_NS)
        if replied_at is not None:
            # Wall clocks of two hosts: clamped at 0, the skew-free figure is round trip - handler.
            reply_start = min(max(replied_at, headers[SENT_AT_NS]), received_ns)
            timing = timing._replace(reply_wait_ns=received_ns - reply_start)
            if producer is not None:
                reply_wait_span(
                    self._tracer,
                    producer,
                    method,
                    correlation_id,
                    start_ns=reply_start,
                    end_ns=received_ns,
                )
        return reply.body, timing

    def _publish_done(
        self,
        method: str,
        future: asyncio.Future[tuple[_Incoming, int]],
        producer: trace.Span | None,
        publish: asyncio.Task[None],
    ) -> None:
        """A publish that failed fails its call, unless the reply is there already."""
        self._publishing.discard(publish)
        if producer is not None and producer.is_recording():
            producer.end()  # cancelled before _publish ran: nothing else ends it
        if publish.cancelled():
            if not future.done():
                # aiormq fails pending confirms with CancelledError when it drops a stuck
                # connection; a cancelled call has its future done already.
                future.set_exception(RpcUnavailable(method, "broker connection dropped"))
            return
        exc = publish.exception()
        if exc is not None and not future.done():
            future.set_exception(exc)

    async def _publish(
        self,
        producer: trace.Span | None,
        exchange: str,
        method: str,
        body: bytes,
        properties: Basic.Properties,
    ) -> None:
        """Publish and wait for the confirmation; ends the PRODUCER span, if any."""
        span = producer or trace.INVALID_SPAN
        try:
            try:
                confirmation = await send_request(self._amqp, method, exchange, body, properties)
            except aiormq.exceptions.DeliveryError as exc:  # how aiormq hands over a nack
                span_error(span, "nack", "the broker refused the message")
                raise RpcUnavailable(method, "the broker refused the request (nack)") from exc
            except _LINK_ERRORS as exc:
                span_error(span, type(exc).__name__, repr(exc))
                raise RpcUnavailable(method, f"broker link failed: {exc!r}") from exc
            except BaseException as exc:
                span_error(span, type(exc).__name__, repr(exc))
                raise
            # On a confirming channel aiormq hands back a returned (unroutable) message as the
            # publish result; aio-pika's return callbacks are not re-hooked after a reconnect,
            # so this is the one place that sees every return.
            if isinstance(confirmation, aiormq.abc.DeliveredMessage):
                self._keep(confirmation)
                span_error(span, "unroutable", "no queue bound")
                raise RpcUnroutable(method, "no worker queue is bound to this method")
        finally:
            span.end()

    # -- callbacks -------------------------------------------------------------------------

    async def _consume_replies(self) -> None:
        assert self._channel is not None
        # Direct reply-to: consumed without acks on the channel that publishes the requests,
        # on aiormq's channel itself: wrapping every reply in an aio-pika message cost more
        # CPU than the rest of the reply path (docs/adr/own-rpc-layer.md).
        self._amqp = await self._channel.get_underlay_channel()
        if not self._confirms:
            watch_returns(cast(aiormq.Channel, self._amqp), self._on_returned)
        await self._amqp.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        await unroutable.consume(self._amqp, self._topology)
        self._ready.set()

    def _keep(self, message: aiormq.abc.DeliveredMessage) -> None:
        """Keep a returned request in the dead letters, with the reason ``unroutable``."""
        task = asyncio.get_running_loop().create_task(
            keep_unroutable(message, self._topology.dead_letter_exchange)
        )
        self._keeping.add(task)
        task.add_done_callback(self._keeping.discard)

    def _on_returned(self, message: aiormq.abc.DeliveredMessage) -> None:
        self._keep(message)
        pending = self._pending.get(message.header.properties.correlation_id or "")
        if pending is not None and not pending[1].done():
            method, future = pending
            future.set_exception(RpcUnroutable(method, "no worker queue is bound to this method"))

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        properties = message.header.properties
        pending = self._pending.pop(properties.correlation_id or "", None)
        if pending is not None and not pending[1].done():
            reply = _Incoming(properties.headers or {}, message.body)
            pending[1].set_result((reply, time.time_ns()))
        # A reply with no pending call arrived after its call timed out: nothing waits for it.

    def _on_channel_close(self, _channel: Any, exc: BaseException | None) -> None:
        self._ready.clear()
        self._fail_pending(f"broker connection lost: {exc!r}")

    async def _on_channel_reopen(self, _channel: Any) -> None:
        # aio-pika gathers reopen callbacks without logging their errors: log them here.
        try:
            await self._consume_replies()
        except Exception:
            log.exception("RPC client reconnected but could not consume replies")
            return
        log.info("RPC client reconnected to the broker")

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for method, future in pending.values():
            if not future.done():
                future.set_exception(RpcUnavailable(method, reason))
