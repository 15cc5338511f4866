"""Dead letters that say why, and a bound on the redeliveries of a request.

A request the worker dead-letters itself is published to the dead-letter exchange with the
worker's reason in its headers, then acked (a ``basic.reject`` cannot add a header: RabbitMQ's
``x-death`` would only say ``rejected``). On the channel the request came from, the copy is
written before the ack, so an ack that reaches the broker has its dead letter before it.

Headers of a dead letter:

- ``x-dead-letter-reason``: ``bad_request``, ``unknown_method``, ``expired``, ``internal``,
  ``delivery_limit``, ``malformed_headers``...
- ``x-dead-letter-detail``: the worker's one-line explanation
- ``x-dead-letter-queue``: the queue it was taken from

Requests the broker itself dead-letters (a message TTL ran out in the queue) keep RabbitMQ's
``x-death`` header, whose ``reason`` is ``expired``.

A request that crashes its worker (the process dies before acking) comes back with the
``redelivered`` flag, on classic queues without a count. :func:`counted_redelivery` gives it
one: a redelivered request is put back at the tail of its queue with ``x-redeliveries`` + 1
and the delivery acked; past ``limit`` it is dead-lettered (``delivery_limit``) instead of
killing the next worker too. Quorum queues count natively (``x-delivery-limit``), and this
bound applies to them the same way.
"""

from __future__ import annotations

import copy
import logging

import aiormq
import aiormq.exceptions
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from broker.rpc.publish import publish
from broker.rpc.wire import header_int
from broker.telemetry.metrics import RPC_DEAD_LETTERED

__all__ = [
    "DETAIL",
    "QUEUE",
    "REASON",
    "REDELIVERIES",
    "counted_redelivery",
    "dead_letter",
    "keep_unroutable",
]

REASON = "x-dead-letter-reason"
DETAIL = "x-dead-letter-detail"
QUEUE = "x-dead-letter-queue"
REDELIVERIES = "x-redeliveries"

log = logging.getLogger("broker._worker")


def _copy(message: DeliveredMessage, **headers: str) -> Basic.Properties:
    properties = copy.copy(message.header.properties)
    properties.headers = {**(properties.headers or {}), **headers}
    # As RabbitMQ does when it dead-letters: a dead letter must not expire on its way.
    properties.expiration = None
    return properties


async def _publish(
    message: DeliveredMessage, exchange: str, routing_key: str, properties: Basic.Properties
) -> None:
    channel = message.channel
    assert isinstance(channel, aiormq.Channel)
    if channel.publisher_confirms:
        await channel.basic_publish(
            message.body, exchange=exchange, routing_key=routing_key, properties=properties
        )
    else:
        await publish(
            channel, message.body, exchange=exchange, routing_key=routing_key, properties=properties
        )


async def dead_letter(
    message: DeliveredMessage, exchange: str, queue: str, reason: str, detail: str
) -> None:
    """Publish a copy of ``message`` to the dead-letter ``exchange`` with the reason headers
    (the caller then acks the original)."""
    properties = _copy(message, **{REASON: reason, DETAIL: detail[:500], QUEUE: queue})
    await _publish(message, exchange, message.routing_key or "", properties)


async def counted_redelivery(
    message: DeliveredMessage, exchange: str, queue: str, dead_letter_exchange: str, limit: int
) -> bool:
    """Whether ``message`` was a redelivery, now re-queued with its count or dead-lettered
    (and acked either way); False for a first delivery, which the caller handles."""
    if not message.redelivered or limit <= 0:
        return False
    tag = message.delivery_tag
    assert tag is not None
    count = (header_int(message.header.properties.headers, REDELIVERIES) or 0) + 1
    if count > limit:
        detail = f"redelivered {count} times: it may crash its worker"
        RPC_DEAD_LETTERED.labels(queue, "delivery_limit").inc()
        log.warning(
            "rpc dead-lettered method=%s correlation_id=%s reason=delivery_limit: %s",
            message.routing_key,
            message.header.properties.correlation_id,
            detail,
        )
        await dead_letter(message, dead_letter_exchange, queue, "delivery_limit", detail)
    else:
        # Through the exchange, by its method: back to the tail of this queue.
        properties = copy.copy(message.header.properties)
        properties.headers = {**(properties.headers or {}), REDELIVERIES: count}
        await _publish(message, exchange, message.routing_key or "", properties)
    await message.channel.basic_ack(tag)
    return True


async def keep_unroutable(message: DeliveredMessage, exchange: str) -> None:
    """A request the broker returned (no queue bound to its method) goes to the dead letters
    with the reason ``unroutable``, counted; its caller has its 503 already. Best effort: a
    channel that is going loses it, as it loses the call."""
    method = message.routing_key or ""
    RPC_DEAD_LETTERED.labels("(unroutable)", "unroutable").inc()
    try:
        await dead_letter(message, exchange, "", "unroutable", f"no queue bound to {method!r}")
    except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
        log.warning("unroutable request not kept method=%s: %r", method, exc)
