"""One AMQP delivery of a request, from the worker's side: the connection's heartbeat, the
trace context in its headers, and its answer (the reply and the ack in one write, or the
rejection to the dead letters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import aiormq
import aiormq.exceptions
import yarl
from aiormq.abc import DeliveredMessage
from opentelemetry.propagators.textmap import Getter
from pamqp.commands import Basic

from broker.rpc.deadletter import dead_letter
from broker.rpc.publish import publish
from broker.rpc.router import Reject
from broker.rpc.wire import CONTENT_TYPE, HANDLER_NS, QUEUE_WAIT_NS, SENT_AT_NS, encode_error
from broker.telemetry.metrics import RPC_DEAD_LETTERED

# Deliveries of one request past which it is dead-lettered (broker.rpc.deadletter): a request
# that kills its worker three times would kill the next one too.
DELIVERY_LIMIT = 3

# Seconds between AMQP heartbeats of a worker's connection. A frozen worker (SIGSTOP, a
# blocked loop) stops sending them; after two missed beats (~2x this) the broker closes its
# connection and requeues the requests it had prefetched, to a live worker (docs/rpc.md,
# "A frozen worker"). RabbitMQ's default, 60 s, would hold them two minutes.
HEARTBEAT_S = 10

log = logging.getLogger("broker._worker")  # the worker's lines, under the worker's name


def heartbeat_url(url: str) -> str:
    """``url`` with the worker's heartbeat, unless the URL sets one itself."""
    parsed = yarl.URL(url)
    if "heartbeat" in parsed.query:
        return url
    return str(parsed.update_query(heartbeat=HEARTBEAT_S))


class _TextHeaders(Getter[Mapping[str, Any]]):
    """Reads trace context from AMQP headers, ignoring values that are not strings: a
    ``traceparent`` sent as an integer (or a table, or bytes) is no trace context, and must not
    crash the request it came with (it gets its reply, under a new trace)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key for key, value in carrier.items() if isinstance(value, str)]


TEXT_HEADERS = _TextHeaders()


class ReplyRefused(Exception):
    """The broker nacked a reply: its request must not be acked as answered."""


def tag(message: DeliveredMessage) -> int:
    """The delivery tag (a consumer's deliveries always carry one)."""
    delivery_tag = message.delivery_tag
    assert delivery_tag is not None
    return delivery_tag


async def rejected(
    message: DeliveredMessage,
    reject: Reject,
    queue: str,
    dead_letter_exchange: str,
    *,
    started: int,
    queue_wait_ns: int,
) -> None:
    """Dead-letter a rejected request, then answer its caller with the error if it can be
    reached, and settle it (``started``: monotonic ns when its handling began)."""
    RPC_DEAD_LETTERED.labels(queue, reject.error_type).inc()
    log.warning(
        "rpc dead-lettered method=%s correlation_id=%s reason=%s: %s",
        message.routing_key or "",
        message.header.properties.correlation_id,
        reject.error_type,
        reject.message,
    )
    await dead_letter(message, dead_letter_exchange, queue, reject.error_type, reject.message)
    if reject.reply and message.header.properties.reply_to:
        error = encode_error(reject.error_type, reject.message)
        elapsed = time.monotonic_ns() - started
        await reply(message, error, elapsed, queue_wait_ns, ack=True)
    else:
        await message.channel.basic_ack(tag(message))


async def reply(
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
    delivery_tag, reply_to = tag(message), request.reply_to or ""
    # Not mandatory: a caller that went away is not an error here.
    channel = cast(aiormq.Channel, message.channel)  # the concrete one takes wait=
    if not channel.publisher_confirms:
        settle = Basic.Ack(delivery_tag) if ack else Basic.Reject(delivery_tag, requeue=False)
        await publish(channel, body, routing_key=reply_to, properties=properties, then=settle)
        return
    try:
        await channel.basic_publish(body, routing_key=reply_to, properties=properties, wait=False)
    except aiormq.exceptions.DeliveryError as exc:  # a nack
        # Not acked as answered: the request is dead-lettered instead (RpcWorker._on_message).
        raise ReplyRefused("the broker refused the reply (nack)") from exc
    if ack:
        await channel.basic_ack(delivery_tag)
    else:
        await channel.basic_reject(delivery_tag, requeue=False)
