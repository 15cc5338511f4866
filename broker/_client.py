"""The caller's side of RPC: an interface, and its AMQP transport over RabbitMQ.

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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import aio_pika
import aio_pika.abc
import aiormq.abc
import aiormq.exceptions
import msgspec
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from ._deadletter import keep_unroutable
from ._errors import (
    RpcError,
    RpcNotFound,
    RpcRemoteError,
    RpcRemoteUnavailable,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
)
from ._metrics import (
    RPC_CLIENT_DURATION,
    RPC_CLIENT_ERRORS,
    RPC_CLIENT_IN_FLIGHT,
    RPC_OVERHEAD,
    exemplar,
    labelled,
)
from ._publish import publish
from ._telemetry import (
    TRACER,
    CallTiming,
    messaging_attributes,
    record_timing,
    recorded_span,
    span_error,
    wait_attributes,
)
from ._transit import TRANSIT_NS, BrokerRoundTrip
from ._wire import (
    CONTENT_TYPE,
    DIRECT_REPLY_TO,
    HANDLER_NS,
    QUEUE_WAIT_NS,
    SENT_AT_NS,
    TIMEOUT_MS,
    ErrorBody,
    Reply,
    Topology,
    encode,
    header_int,
)

T = TypeVar("T")


class _Incoming(NamedTuple):
    """A reply as the caller needs it: its headers and body (no aio-pika message wrapped)."""

    headers: Mapping[str, Any]
    body: bytes


log = logging.getLogger(__name__)

# What aio-pika and aiormq raise when the channel or connection is gone or going.
_LINK_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class RpcClient(Protocol):
    """Calls a method on a remote worker and returns its decoded result.

    Raises a subclass of :class:`RpcError`; never waits longer than the timeout.
    """

    async def call(
        self,
        method: str,
        request: Any,
        result_type: type[T],
        *,
        timeout: float | None = None,
    ) -> T:
        """Send ``request`` (JSON-encodable) to ``method``; decode the result as ``result_type``."""
        ...

    async def ping(self) -> None:
        """Raise :class:`RpcUnavailable` unless calls can be sent now."""
        ...


class AmqpRpcClient:
    """:class:`RpcClient` over RabbitMQ request-reply (protocol v1).

    Use as ``async with AmqpRpcClient(url) as client:``; the connection recovers by itself
    after a broker restart, and calls made while it is down fail fast with
    :class:`RpcUnavailable` instead of waiting for it.

    ``publisher_confirms=True`` has the broker confirm every request, and a nack fail its call
    (RpcUnavailable). Off by default: an unroutable request fails its call at once either way
    (:meth:`_watch_returns`), and the confirmations cost round-trip time and throughput
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
        self._tracer_provider = tracer_provider
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
        self._broker_rtt = BrokerRoundTrip()  # sent as x-transit-ns (broker/_transit.py)
        self._measuring = contextlib.AsyncExitStack()

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
            # The exchange is the client's contract with the workers; declaring it (idempotent)
            # lets the client start before any worker and get fast "unroutable" answers.
            await channel.declare_exchange(
                self._topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            # Where returned (unroutable) requests are kept, as the workers declare it.
            await channel.declare_exchange(
                self._topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
            )
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
        return await observed_call(
            self._tracer,
            method,
            {"rpc.system": "rabbitmq", "rpc.method": method},
            lambda: self._round_trip(method, request, timeout),
            result_type,
            tracer_provider=self._tracer_provider,
        )

    async def _round_trip(
        self, method: str, request: Any, timeout: float
    ) -> tuple[bytes, CallTiming]:
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
        # The PRODUCER span only in a sampled trace: unsampled, it would carry nothing, and the
        # call span's context (still valid, with its trace id) is what the worker continues.
        producer: trace.Span | None = None
        if trace.get_current_span().get_span_context().trace_flags.sampled:
            producer = self._tracer.start_span(
                f"send {exchange}:{method}",
                kind=SpanKind.PRODUCER,
                attributes=messaging_attributes("send", exchange, method, correlation_id, body),
                record_exception=False,
                set_status_on_exception=False,
            )
            propagate.inject(headers, context=trace.set_span_in_context(producer))
        else:
            propagate.inject(headers)
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
                self._tracer.start_span(
                    f"reply wait {method}",
                    context=trace.set_span_in_context(producer),
                    start_time=reply_start,
                    attributes=wait_attributes(
                        method, correlation_id, "rpc.reply_wait_ms", timing.reply_wait_ns
                    ),
                ).end(end_time=received_ns)
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
                confirmation = await self._send(method, exchange, body, properties)
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

    async def _send(
        self, method: str, exchange: str, body: bytes, properties: Basic.Properties
    ) -> object:
        if self._amqp is None:
            raise RpcUnavailable(method, "not connected to the broker")
        # On the channel itself, not through aio-pika's robust wrapper: that one waits for a
        # lost connection to come back, this one fails at once. Not waiting for the socket
        # buffer to drain: the confirmation (or the reply) comes after it anyway.
        channel = cast(aiormq.Channel, self._amqp)  # the concrete one takes wait=
        if not channel.publisher_confirms:
            # Straight onto the write queue (broker._publish); a return comes as _on_returned.
            await publish(
                channel,
                body,
                exchange=exchange,
                routing_key=method,
                properties=properties,
                mandatory=True,
            )
            return None
        # Typed as an ack frame, but a returned message comes back as the result (_publish).
        confirmation: object = await channel.basic_publish(
            body,
            exchange=exchange,
            routing_key=method,
            properties=properties,
            mandatory=True,
            wait=False,
        )
        return confirmation

    # -- callbacks -------------------------------------------------------------------------

    async def _consume_replies(self) -> None:
        assert self._channel is not None
        # Direct reply-to: consumed without acks on the channel that publishes the requests,
        # on aiormq's channel itself: wrapping every reply in an aio-pika message cost more
        # CPU than the rest of the reply path (docs/adr/own-rpc-layer.md).
        self._amqp = await self._channel.get_underlay_channel()
        if not self._confirms:
            self._watch_returns(cast(aiormq.Channel, self._amqp))
        await self._amqp.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        self._ready.set()

    def _watch_returns(self, channel: aiormq.Channel) -> None:
        """Fail a call at once when the broker returns its request as unroutable.

        aiormq (7.2) matches a returned message to its publish only on a confirming channel;
        on any other it logs the return and drops it, so a call to a method nobody serves
        would wait for its timeout. Confirming every request cost round-trip time and
        throughput (docs/adr/publisher-confirms-off.md), so instead the channel's
        handler of Basic.Return is replaced by one that reads the returned message exactly as
        aiormq's does (content header, then body) and fails the call it belongs to by its
        correlation id. aiormq is pinned below 7.3 for this; tests/test_rpc.py fails if a
        return stops arriving here.
        """

        async def on_return(frame: Basic.Return) -> None:
            header = await channel._get_frame()
            if not isinstance(header, ContentHeader):
                # What aiormq raises in its own reader for this: its channel then closes.
                raise ValueError(f"unexpected frame {header!r} after Basic.Return")  # noqa: TRY004
            message = await channel._read_content(frame, header)
            self._on_returned(message)

        channel._on_return_frame = on_return  # type: ignore[method-assign]

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


_methods_seen: set[str] = set()


async def observed_call(
    tracer: trace.Tracer,
    method: str,
    attributes: dict[str, Any],
    round_trip: Callable[[], Awaitable[tuple[bytes, CallTiming]]],
    result_type: type[T],
    *,
    tracer_provider: trace.TracerProvider | None,
) -> T:
    """One call as every transport records it: the CLIENT span ``call <method>``, the client
    metrics, the :class:`CallTiming`; ``round_trip`` returns the reply body and its timing."""
    if method not in _methods_seen:
        # Error series exist from the first call on, at 0: a rate over them is 0, not absent.
        _methods_seen.add(method)
        for error_type in ("timeout", "unroutable", "unavailable"):
            RPC_CLIENT_ERRORS.labels(method, error_type)
    # No CLIENT span where it would record nothing (a trace the sampler turned down, or no
    # SDK): the current context goes on to the worker as it is, and nothing is set on a span.
    scope = recorded_span(
        tracer,
        tracer_provider,
        f"call {method}",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    with scope as span:
        current = trace.get_current_span()  # the exemplars' span: looked up once
        in_flight = labelled(RPC_CLIENT_IN_FLIGHT, method)
        in_flight.inc()
        started = time.perf_counter()
        outcome = "ok"
        try:
            body, timing = await round_trip()
            record_timing(timing)
            labelled(RPC_OVERHEAD, method).observe(timing.overhead_ns / 1e9, exemplar(current))
            if span.is_recording():
                span.set_attributes(
                    {
                        "rpc.round_trip_ms": timing.round_trip_ns / 1e6,
                        "rpc.handler_ms": timing.handler_ns / 1e6,
                        "rpc.overhead_ms": timing.overhead_ns / 1e6,
                        "rpc.queue_wait_ms": timing.queue_wait_ns / 1e6,
                        "rpc.reply_wait_ms": timing.reply_wait_ns / 1e6,
                    }
                )
            return decode_reply(method, body, result_type)
        except RpcError as exc:
            outcome = exc.error_type
            labelled(RPC_CLIENT_ERRORS, method, outcome).inc()
            span_error(span, exc.error_type, str(exc))
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"  # the caller gave up (say, the HTTP client went away)
            raise
        except BaseException as exc:  # an unencodable request, or a bug: never "ok"
            outcome = "error"
            span_error(span, type(exc).__name__, repr(exc))
            raise
        finally:
            in_flight.dec()
            labelled(RPC_CLIENT_DURATION, method, outcome).observe(
                time.perf_counter() - started, exemplar(current)
            )


def decode_reply(method: str, body: bytes, result_type: type[T]) -> T:
    try:
        reply: Reply[T] = msgspec.json.decode(
            body,
            type=Reply[result_type],  # type: ignore[valid-type]
        )
    except msgspec.DecodeError as exc:
        raise RpcRemoteError(method, "bad_reply", f"undecodable reply: {exc}") from None
    if reply.error is not None:
        raise remote_error(method, reply.error)
    if reply.result is None:
        raise RpcRemoteError(method, "bad_reply", "reply has neither result nor error")
    return reply.result


def remote_error(method: str, error: ErrorBody) -> RpcRemoteError:
    """The exception of a worker's error reply, whatever the transport."""
    kinds: dict[str, type[RpcRemoteError]] = {
        "not_found": RpcNotFound,
        "unavailable": RpcRemoteUnavailable,
    }
    return kinds.get(error.type, RpcRemoteError)(method, error.type, error.message)
