"""``python -m loadtest.devstack.netdelay``: a TCP proxy that delays what it forwards, set live.

A slow network on purpose, in userspace (the kernel of a developer's machine or a CI runner
often has no ``netem``): each link listens on a port and forwards to one upstream address; the
stack (`loadtest.devstack.stack`) points drama-service and the workers at the links instead of at
the broker, and drama-service at the links in front of the workers' HTTP ports. With no delay set a
chunk is written on as soon as it is read (the cost of one more hop through a Python event loop;
docs/faults.md has the figure).

A delay applies per direction (``request``: client to upstream; ``reply``: back), fixed or with
jitter (uniform in ``delay +- jitter``). Each chunk leaves at its arrival time plus its delay,
and never before the chunk read before it: a TCP stream stays in order, and delays do not add
up the way sleeping before each write would.

The delay is set like the other faults: a :class:`~broker.FaultRule` with ``network_delay_ms``
on the broker's ``rpc.control`` exchange (``python -m loadtest fault --network-delay-ms 5``);
the proxy answers with the rules now active on it, as the workers do. ``--clear`` removes them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import aio_pika
import aio_pika.abc
import msgspec

from broker.rpc import FaultAck, FaultRule, Topology

log = logging.getLogger(__name__)

READY = "netdelay listening on"
DIRECTIONS = ("request", "reply")


@dataclass
class Delay:
    """One direction's delay: ``ms`` +- ``jitter_ms`` (uniform), never below 0."""

    ms: float = 0.0
    jitter_ms: float = 0.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def seconds(self) -> float:
        if not self.jitter_ms:
            return self.ms / 1000
        return max(0.0, self.ms + self.rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000


class _Pipe:
    """One direction of one connection: chunks in, the same chunks out, each at its time."""

    def __init__(self, delay: Delay, loop: asyncio.AbstractEventLoop) -> None:
        self._delay = delay
        self._loop = loop
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._closing = False
        self.target: asyncio.Transport | None = None

    def push(self, data: bytes) -> None:
        delay = self._delay.seconds()
        if delay <= 0 and not self._queue:
            self._write(data)
            return
        # In order: never before the chunk read before it.
        release = max(self._loop.time() + delay, self._last)
        self._last = release
        self._queue.append((release, data))
        if self._timer is None:
            self._timer = self._loop.call_at(release, self._flush)

    def _write(self, data: bytes) -> None:
        if self.target is not None and not self.target.is_closing():
            self.target.write(data)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            self._write(self._queue.popleft()[1])
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)
        elif self._closing:
            self._close_target()

    def close(self) -> None:
        """The source is gone: close the target once what is in flight has been written."""
        self._closing = True
        if not self._queue:
            self._close_target()

    def _close_target(self) -> None:
        if self.target is not None:
            self.target.close()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes into ``outgoing``."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, *, paused: bool = False) -> None:
        self._paused = paused
        self.outgoing = outgoing
        self.incoming = incoming
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.sides: set[_Side] | None = None  # the link's open sockets, this one among them

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.incoming.target = transport
        if self._paused:
            transport.pause_reading()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.outgoing.push(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.outgoing.close()
        if self.sides is not None:
            self.sides.discard(self)

    # Back-pressure: a peer that cannot keep up stops this side from reading.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Link:
    """A listening port forwarding to ``upstream``, with a delay each way."""

    def __init__(self, name: str, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.delays = {direction: Delay() for direction in DIRECTIONS}
        self._server: asyncio.Server | None = None
        self._sides: set[_Side] = set()
        self._connecting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, *self.listen)
        sock = self._server.sockets[0]
        self.listen = sock.getsockname()[:2]

    def _accept(self) -> _Side:
        loop = asyncio.get_running_loop()
        request, reply = _Pipe(self.delays["request"], loop), _Pipe(self.delays["reply"], loop)
        client = _Side(outgoing=request, incoming=reply, paused=True)
        task = loop.create_task(self._connect(client, request, reply))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        return client

    async def _connect(self, client: _Side, request: _Pipe, reply: _Pipe) -> None:
        """The upstream half; the client's socket is read only once it is there."""
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Side(outgoing=reply, incoming=request), *self.upstream
            )
        except OSError as exc:
            log.warning("netdelay %s: upstream %s:%d refused: %s", self.name, *self.upstream, exc)
            if client.transport is not None:
                client.transport.close()
            return
        client.peer, upstream.peer = upstream, client
        for side in (client, upstream):
            side.sides = self._sides
            self._sides.add(side)
        if client.transport is not None and not client.transport.is_closing():
            client.transport.resume_reading()
        else:
            request.close()

    async def close(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        if self._server is not None:
            self._server.close()
        for side in list(self._sides):
            if side.transport is not None:
                side.transport.abort()
        self._sides.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def rule(self) -> FaultRule | None:
        """The active delay as the rule that would set it (None: no delay)."""
        request, reply = self.delays["request"], self.delays["reply"]
        if not (request.ms or request.jitter_ms or reply.ms or reply.jitter_ms):
            return None
        same = (request.ms, request.jitter_ms) == (reply.ms, reply.jitter_ms)
        active = request if same or request.ms or request.jitter_ms else reply
        direction: Literal["both", "request", "reply"] = (
            "both" if same else "request" if active is request else "reply"
        )
        return FaultRule(
            network_link=self.name,
            network_delay_ms=active.ms,
            network_jitter_ms=active.jitter_ms,
            network_direction=direction,
        )

    def apply(self, rule: FaultRule) -> None:
        directions = DIRECTIONS if rule.network_direction == "both" else (rule.network_direction,)
        for direction in DIRECTIONS:
            delay = self.delays[direction]
            if rule.clear:
                delay.ms = delay.jitter_ms = 0.0
            elif direction in directions:
                delay.ms, delay.jitter_ms = rule.network_delay_ms, rule.network_jitter_ms


class NetDelay:
    """The links of one process, and their control over the broker."""

    def __init__(
        self, links: list[Link], amqp_url: str | None, control_exchange: str | None = None
    ) -> None:
        self.links = links
        self._amqp_url = amqp_url
        self._control_exchange = control_exchange or Topology().control_exchange
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    def applies(self, rule: FaultRule) -> list[Link]:
        """The links a rule is for: network rules and bare ``clear`` (every fault off)."""
        if not (rule.is_network or (rule.clear and rule.queue is None and rule.method is None)):
            return []
        return [link for link in self.links if rule.network_link in (None, link.name)]

    def ack(self) -> FaultAck:
        rules = {link.name: rule for link in self.links if (rule := link.rule()) is not None}
        return FaultAck(
            queue="netdelay", host=socket.gethostname(), pid=os.getpid(), rules=rules, prefetch=0
        )

    async def start(self) -> None:
        for link in self.links:
            await link.start()
        if self._amqp_url is None:
            return
        self._connection = await aio_pika.connect_robust(
            self._amqp_url,
            client_properties={
                "connection_name": f"loadtest netdelay {socket.gethostname()}-{os.getpid()}"
            },
        )
        channel = self._channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self._control_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        # Named as the workers' control queues are: whose it is, in the management UI.
        name = f"{self._control_exchange}.netdelay.{socket.gethostname()}-{os.getpid()}"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(self._on_control)

    async def _on_control(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            try:
                rule = msgspec.json.decode(message.body, type=FaultRule)
            except msgspec.DecodeError:
                log.warning("netdelay: a control message that is not a rule, dropped")
                return
            links = self.applies(rule)
            if not links:
                return
            for link in links:
                link.apply(rule)
            log.info("netdelay rule %s", msgspec.json.encode(rule).decode())
            if message.reply_to and self._channel is not None:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        msgspec.json.encode(self.ack()),
                        content_type="application/json",
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                    # RabbitMQ 3.x returns direct reply-to messages sent mandatory
                    # (broker.rpc.faults).
                    mandatory=False,
                )

    async def close(self) -> None:
        for link in self.links:
            await link.close()
        if self._connection is not None:
            await self._connection.close()


def parse_link(text: str) -> Link:
    """``NAME=LISTEN_PORT:HOST:PORT`` (listen on 127.0.0.1; port 0: any free port)."""
    try:
        name, rest = text.split("=", 1)
        listen, host, port = rest.split(":")
        return Link(name, ("127.0.0.1", int(listen)), (host, int(port)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--link {text!r}: expected NAME=LISTEN_PORT:HOST:PORT"
        ) from None


async def _serve(proxy: NetDelay, stopped: Callable[[], asyncio.Event]) -> None:
    stop = stopped()
    await proxy.start()
    try:
        for link in proxy.links:
            host, port = link.listen
            print(f"{READY} {host}:{port} -> {link.upstream[0]}:{link.upstream[1]} ({link.name})")
        print(f"netdelay ready: {len(proxy.links)} links", flush=True)
        await stop.wait()
    finally:
        await proxy.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.devstack.netdelay",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--link", type=parse_link, action="append", required=True, metavar="NAME=PORT:HOST:PORT"
    )
    parser.add_argument("--amqp-url", help="the broker whose rpc.control carries the rules")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def stopped() -> asyncio.Event:
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, event.set)
        return event

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(NetDelay(args.link, args.amqp_url), stopped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
