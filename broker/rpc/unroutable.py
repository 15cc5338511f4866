"""Requests no queue is bound for, kept and answered: the alternate exchange of ``rpc``.

Without an alternate exchange the broker returns a mandatory request with no queue bound to
its method (the caller answers 503 at once and keeps it, :mod:`broker.rpc.deadletter`), and
drops a request that was not mandatory. With the policy that gives ``rpc`` the alternate
exchange ``rpc.unroutable`` (a policy, not an exchange argument: adding an argument to an
existing ``rpc`` would fail its declaration everywhere, docs/rpc.md), the broker routes such a
request, mandatory or not, to the ``rpc.unroutable`` queue instead, where nothing is lost.

A request routed there counts as routed, so no return comes: the callers' clients
(:class:`~broker.AmqpRpcClient`) consume ``rpc.unroutable`` and answer each request with the
error ``unroutable`` (the caller's 503, as fast as a return), then keep it in ``rpc.dead``
with the reason ``unroutable`` and count it (``rpc_dead_lettered_total{queue="(unroutable)"}``).
With no client running, the requests wait in ``rpc.unroutable`` (bounded) and the alert
RabbitMQUnroutableRequests says so.
"""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq.abc
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from broker.rpc.deadletter import keep_unroutable
from broker.rpc.wire import CONTENT_TYPE, Topology, encode_error

log = logging.getLogger(__name__)

# As rpc.dead: an overload of unroutable requests cannot fill the broker.
QUEUE_ARGUMENTS: dict[str, Any] = {"x-max-length": 100_000, "x-message-ttl": 7 * 24 * 3600 * 1000}


def ae_policy(topology: Topology) -> dict[str, object]:
    """The policy that gives the ``rpc`` exchange its alternate exchange (what
    ``rabbitmqctl set_policy`` or the management API's ``PUT /api/policies`` takes)."""
    return {
        "pattern": f"^{topology.exchange.replace('.', '[.]')}$",
        "definition": {"alternate-exchange": topology.unroutable_exchange},
        "apply-to": "exchanges",
        "priority": 0,
    }


async def declare(channel: aio_pika.abc.AbstractChannel, topology: Topology) -> None:
    """The alternate exchange and its queue (a fanout: every unroutable request lands there)."""
    exchange = await channel.declare_exchange(
        topology.unroutable_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    queue = await channel.declare_queue(
        topology.unroutable_exchange, durable=True, arguments=QUEUE_ARGUMENTS
    )
    await queue.bind(exchange)


async def answer(message: DeliveredMessage, topology: Topology) -> None:
    """Answer an unroutable request ``unroutable`` (if it asked for a reply), keep it in the
    dead letters, ack it."""
    properties = message.header.properties
    method = message.routing_key or ""
    channel = message.channel
    if properties.reply_to and properties.correlation_id:
        reply = encode_error("unroutable", f"no worker queue is bound to {method!r}")
        await channel.basic_publish(
            reply,
            routing_key=properties.reply_to,
            properties=Basic.Properties(
                content_type=CONTENT_TYPE, correlation_id=properties.correlation_id
            ),
        )
    await keep_unroutable(message, topology.dead_letter_exchange)
    assert message.delivery_tag is not None
    await channel.basic_ack(message.delivery_tag)


async def consume(channel: aiormq.abc.AbstractChannel, topology: Topology) -> None:
    """Answer what lands in ``rpc.unroutable``, on ``channel`` (aiormq's own)."""

    async def on_message(message: DeliveredMessage) -> None:
        try:
            await answer(message, topology)
        except Exception:
            # Not acked: the broker gives it back when the channel goes, nothing is lost.
            log.exception("unroutable request not answered method=%s", message.routing_key)

    await channel.basic_consume(topology.unroutable_exchange, on_message)
