"""Fault injection: make a worker slow, failing, congested or its database slow, at run time.

A bottleneck made on purpose is how the trace analyser is checked (does it name the right hop?)
and how people learn to read the waterfall. Faults are switched by a control message on the
broker, so one command reaches every replica of a worker without a restart:

* the ``rpc.control`` fanout exchange carries a :class:`FaultRule` (JSON);
* every worker started with ``faults=True`` binds a private queue to it, applies the rules that
  match its queue and methods, and acknowledges to the sender's ``reply_to`` with a
  :class:`FaultAck` (its queue, process and the rules now active);
* :func:`send_fault_rule` publishes a rule and collects the acknowledgements
  (``python -m loadtest fault`` is its command line).

Kinds of fault, per method (or for all methods of a queue): an added handler delay (fixed, or
drawn from a uniform or exponential distribution with that mean), an error rate (the request is
answered with the ``injected`` error, acked, not dead-lettered: it is not a bad message), and a
delay added to every database statement the handler runs; per queue: a prefetch (a smaller one
congests the queue). ``clear`` removes the rules (and restores the prefetch). A network delay
(``network_*``) is for the delaying proxies of the dev stack, which listen on the same exchange.

Off by default (``FAULTS_ENABLED``): a production worker does not listen for them.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import aio_pika
import aio_pika.abc
import msgspec

from broker.errors import HandlerError
from broker.rpc.wire import CONTENT_TYPE, DIRECT_REPLY_TO, Topology

Req = TypeVar("Req")
Handler = Callable[[Req], Awaitable[Any]]

ALL = "*"

log = logging.getLogger("broker._worker")  # the worker's lines, under the worker's name
_Ms = Annotated[float, msgspec.Meta(ge=0, le=600_000)]


class InjectedFault(HandlerError):
    """The error an ``error_rate`` fault answers with."""

    error_type = "injected"


class FaultRule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """One control message: which worker queue and method, and what to do to them.

    ``queue`` and ``method`` select (None: every queue / every method of it). ``clear`` drops
    the selected rules instead of setting one.
    """

    queue: str | None = None
    method: str | None = None
    delay_ms: _Ms = 0.0
    delay: Literal["fixed", "uniform", "exponential"] = "fixed"
    error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    db_delay_ms: _Ms = 0.0
    prefetch: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    clear: bool = False
    # A slow network: for the delaying proxies of the dev stack (loadtest/netdelay.py), not
    # for workers. ``network_link`` selects one link (None: all), ``network_direction`` one way.
    network_link: str | None = None
    network_delay_ms: _Ms = 0.0
    network_jitter_ms: _Ms = 0.0
    network_direction: Literal["both", "request", "reply"] = "both"

    @property
    def is_network(self) -> bool:
        """A rule for the network proxies (a worker leaves it alone)."""
        return bool(
            self.network_link is not None or self.network_delay_ms or self.network_jitter_ms
        )

    def handler_delay(self, rng: random.Random) -> float:
        """Seconds to add to one request."""
        mean = self.delay_ms / 1000
        if mean <= 0 or self.delay == "fixed":
            return mean
        if self.delay == "uniform":
            return rng.uniform(0, 2 * mean)
        return rng.expovariate(1 / mean)


class FaultAck(msgspec.Struct, frozen=True):
    """A worker's answer to a control message: the rules active on it now."""

    queue: str
    host: str
    pid: int
    rules: dict[str, FaultRule]
    prefetch: int


_db_delay: contextvars.ContextVar[float] = contextvars.ContextVar("fault_db_delay", default=0.0)


def db_delay() -> float:
    """Seconds to add to each database statement of the request being handled now."""
    return _db_delay.get()


class Faults:
    """The fault rules of one worker, keyed by method (``*``: all of its methods)."""

    def __init__(self, queue: str, prefetch: int, rng: random.Random | None = None) -> None:
        self.queue = queue
        self.default_prefetch = prefetch
        self.prefetch = prefetch
        self.rules: dict[str, FaultRule] = {}
        self.methods: set[str] = set()  # those wrapped: a rule naming another is not ours
        self._rng = rng or random.Random()  # noqa: S311 - fault sampling, not cryptography

    def matches(self, rule: FaultRule) -> bool:
        if rule.is_network:
            return False
        if rule.queue is not None and rule.queue != self.queue:
            return False
        return rule.method is None or rule.method in self.methods

    def apply(self, rule: FaultRule) -> None:
        """Set or clear what ``rule`` selects (the caller checked :meth:`matches`)."""
        key = rule.method or ALL
        if rule.clear:
            if rule.method is None:
                self.rules.clear()
                self.prefetch = self.default_prefetch
            else:
                self.rules.pop(key, None)
            return
        if rule.prefetch is not None:
            self.prefetch = rule.prefetch
        if rule.delay_ms or rule.error_rate or rule.db_delay_ms:
            self.rules[key] = rule
        else:
            self.rules.pop(key, None)

    def ack(self) -> FaultAck:
        return FaultAck(
            queue=self.queue,
            host=socket.gethostname(),
            pid=os.getpid(),
            rules=dict(self.rules),
            prefetch=self.prefetch,
        )

    def wrap(self, method: str, handler: Handler[Req]) -> Handler[Req]:
        """``handler`` with the rules for ``method`` applied when there are any."""
        self.methods.add(method)

        async def faulty(request: Req) -> Any:
            rule = self.rules.get(method) or self.rules.get(ALL)
            if rule is None:
                return await handler(request)
            delay = rule.handler_delay(self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
            if rule.error_rate and self._rng.random() < rule.error_rate:
                raise InjectedFault(f"injected fault on {method}")
            token = _db_delay.set(rule.db_delay_ms / 1000)
            try:
                return await handler(request)
            finally:
                _db_delay.reset(token)

        return faulty


def instance() -> str:
    """This process among its replicas, as an operator finds it: ``<host>-<pid>`` (in a pod, the
    host name is the pod's)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def control_queue_name(control_exchange: str, queue: str) -> str:
    """The private control queue of a worker of ``queue``: whose it is, in its name (the
    management UI shows ``rpc.control.episode.<host>-<pid>``, not ``amq.gen-...``)."""
    return f"{control_exchange}.{queue.removeprefix('rpc.')}.{instance()}"


async def listen_for_rules(
    channel: aio_pika.abc.AbstractChannel,
    topology: Topology,
    faults: Faults,
    set_prefetch: Callable[[int], Awaitable[None]],
) -> None:
    """Apply the rules sent to ``faults``' queue: a private queue on the control exchange;
    malformed rules are dead-lettered. ``set_prefetch`` makes a new prefetch the worker's."""
    control = await channel.declare_exchange(
        topology.control_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        control_queue_name(topology.control_exchange, faults.queue),
        exclusive=True,
        auto_delete=True,
        arguments={"x-dead-letter-exchange": topology.dead_letter_exchange},
    )
    await queue.bind(control)

    async def on_control(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            rule = msgspec.json.decode(message.body, type=FaultRule)
        except msgspec.DecodeError as exc:
            log.warning("fault rule dead-lettered: %s", exc)
            await message.reject(requeue=False)
            return
        if faults.matches(rule):
            before = faults.prefetch
            faults.apply(rule)
            if faults.prefetch != before:
                await set_prefetch(faults.prefetch)
            log.warning(
                "fault rules now queue=%s prefetch=%d rules=%s",
                faults.queue,
                faults.prefetch,
                msgspec.json.encode(faults.rules).decode(),
            )
            await answer_control(channel, faults, message)
        await message.ack()

    await queue.consume(on_control)


async def answer_control(
    channel: aio_pika.abc.AbstractChannel, faults: Faults, request: aio_pika.abc.AbstractMessage
) -> None:
    """Send the rules now active to the control message's sender, if it asked for them.

    Not mandatory: the answer goes to the sender's direct reply-to, which RabbitMQ (before 4.x)
    returns as unroutable to a mandatory publish even when it delivered it, and which is gone
    once the sender stopped waiting; either way there is nothing for the worker to do, and a
    returned answer would be logged as an unhandled message.
    """
    if not request.reply_to:
        return
    await channel.default_exchange.publish(
        aio_pika.Message(
            msgspec.json.encode(faults.ack()),
            content_type=CONTENT_TYPE,
            correlation_id=request.correlation_id,
        ),
        routing_key=request.reply_to,
        mandatory=False,
    )


async def send_fault_rule(
    url: str,
    rule: FaultRule,
    *,
    exchange: str = Topology().control_exchange,
    expect: int | None = None,
    wait: float = 2.0,
) -> list[FaultAck]:
    """Publish ``rule`` to every worker and collect their acknowledgements.

    Returns when ``expect`` workers have answered, or after ``wait`` seconds with those that
    did (an operator does not always know how many replicas run).
    """
    acks: list[FaultAck] = []
    enough = asyncio.Event()
    correlation_id = uuid.uuid4().hex
    connection = await aio_pika.connect(
        url, client_properties={"connection_name": f"loadtest fault {instance()}"}
    )
    async with connection:
        channel = await connection.channel()
        control = await channel.declare_exchange(
            exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        reply_queue = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            if message.correlation_id != correlation_id:
                return
            acks.append(msgspec.json.decode(message.body, type=FaultAck))
            if expect is not None and len(acks) >= expect:
                enough.set()

        await reply_queue.consume(on_reply, no_ack=True)
        await control.publish(
            aio_pika.Message(
                msgspec.json.encode(rule),
                content_type=CONTENT_TYPE,
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
            ),
            routing_key="",
        )
        try:
            async with asyncio.timeout(wait):
                await enough.wait()
        except TimeoutError:
            pass
    return acks
