"""A publish on aiormq's channel, without the per-publish machinery nothing here needs.

``aiormq.Channel.basic_publish`` takes the channel's lock, enters a timeout and a close guard,
and gives every message without a ``message_id`` a random UUID; ``basic_ack`` puts the ack on
the write queue as a write of its own and waits for it to drain. Without publisher confirms
none of that does anything for the message: a publish is its frames (method, header, body) put
on the connection's write queue, which the connection's writer sends in order. At concurrency 1
that machinery was latency: a worker that put its reply and the request's ack on the queue
itself, as one write, answered a round trip sooner (docs/adr/own-rpc-layer.md).

:func:`publish` does only that, on a channel without confirms (a confirming channel needs
aiormq's delivery tags: use ``basic_publish``). Frames go through the same bounded write queue,
in order. A full queue holds a publish back only while the channel is open: a lost
connection's writer takes nothing more, and a publish waiting for room in its queue fails when
the channel closes (aiormq's own publish waited there until the caller's timeout).

It reads aiormq 7.2's channel attributes ``write_queue``, ``number``, ``max_content_size``,
``is_closed`` and ``closing``, and builds ``aiormq.abc.ChannelFrame``: aiormq is pinned to 7.2.x
(pyproject.toml), and tests/test_rpc.py sends bodies larger than a frame both ways.
"""

from __future__ import annotations

import asyncio

import aiormq
import aiormq.exceptions
from aiormq.abc import ChannelFrame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

__all__ = ["publish"]


async def publish(
    channel: aiormq.Channel,
    body: bytes,
    *,
    routing_key: str,
    properties: Basic.Properties,
    exchange: str = "",
    mandatory: bool = False,
    then: Frame | None = None,
) -> None:
    """``basic.publish`` of ``body``, and ``then`` (say, the ack of the request this answers)
    in the same write; returns once the frames are on the write queue, in order after any
    queued before them. Raises ``ChannelInvalidStateError`` on a closed channel, and when the
    channel closes while the write queue is full (a lost connection's writer takes nothing:
    waiting for it would hang the caller until its timeout)."""
    if channel.publisher_confirms:
        raise ValueError("publish() is for channels without confirms: use basic_publish")
    if channel.is_closed:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
    if len(routing_key) > 255:  # as basic_publish checks it
        raise ValueError("Routing key too long (max 255 bytes)")
    frames: list[Frame | ContentHeader | ContentBody] = [
        Basic.Publish(exchange=exchange, routing_key=routing_key, mandatory=mandatory),
        ContentHeader(properties=properties, body_size=len(body)),
    ]
    # frame_max less the frame's own bytes; a broker may negotiate 0 (no limit): one frame.
    size = channel.max_content_size if channel.max_content_size > 0 else max(len(body), 1)
    frames += [ContentBody(body[start : start + size]) for start in range(0, len(body), size)]
    if then is not None:
        frames.append(then)
    frame, queue = ChannelFrame.marshall(channel.number, frames), channel.write_queue
    if not queue.full():
        queue.put_nowait(frame)
        return
    # The writer is behind, or stopped with a lost connection, whose full queue would never
    # take this frame: wait for room only while the channel stays open.
    put = asyncio.ensure_future(queue.put(frame))
    closing = channel.closing  # an observer: cancelling it leaves the channel alone
    try:
        await asyncio.wait((put, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        queued = put.done()
        if not queued:  # the channel closed, or the caller was cancelled: not sent
            put.cancel()
        closing.cancel()
    if not queued:
        raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
