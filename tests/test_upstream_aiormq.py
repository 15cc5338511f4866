"""aiormq's handling of Basic.Return, the defect that `broker/rpc/returns.py` works around.

`broker.rpc.returns.watch_returns` replaces the channel's private ``_on_return_frame`` because
aiormq (7.2) matches a returned message to its publish only on a confirming channel: on any
other it logs the return and drops it, so ``on_return_callbacks`` (and aio-pika's
``Channel.on_return``, built on them) never hear of it, and a call to a method nobody serves
would wait for its timeout. Confirming every request to get the return costs round-trip time
(docs/adr/aiormq-returns.md).

These tests hold aiormq to that against the real broker. The day aiormq hands a return on a
non-confirming channel to its callbacks, the first one fails and says what to switch to.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import aiormq
import aiormq.abc
import pytest
from pamqp.commands import Basic

SWITCH = (
    "aiormq now hands a returned message on a channel without publisher confirms to "
    "on_return_callbacks: drop watch_returns (broker/rpc/returns.py), register "
    "self._on_returned with channel.on_return_callbacks.add(...) instead of replacing "
    "channel._on_return_frame, lift the aiormq<7.3 pin and update docs/adr/aiormq-returns.md"
)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[aiormq.abc.AbstractConnection]:
    conn = await aiormq.connect(amqp_url)
    yield conn
    await conn.close()


async def publish_unroutable(
    channel: aiormq.abc.AbstractChannel, message_id: str | None
) -> list[aiormq.abc.DeliveredMessage]:
    """Publish a mandatory message that no queue takes; what on_return_callbacks were given.

    The broker sends Basic.Return before the answer to any later method on the channel, and
    aiormq's reader handles a channel's frames in order: once ``basic_qos`` is answered, the
    return has been handled, whatever aiormq did with it (no sleep, no timeout)."""
    returned: list[aiormq.abc.DeliveredMessage] = []
    channel.on_return_callbacks.add(returned.append)
    await channel.basic_publish(
        b"nobody serves this",
        exchange="",  # the default exchange routes by queue name: this one does not exist
        routing_key=f"test.{uuid.uuid4().hex[:8]}.nobody",
        properties=Basic.Properties(message_id=message_id, correlation_id="c-1"),
        mandatory=True,
    )
    await channel.basic_qos(prefetch_count=1)
    return returned


@pytest.mark.parametrize("message_id", ["m-1", None], ids=["with-message-id", "without"])
async def test_return_without_confirms_is_dropped(
    connection: aiormq.abc.AbstractConnection,
    caplog: pytest.LogCaptureFixture,
    message_id: str | None,
) -> None:
    channel = await connection.channel(publisher_confirms=False)
    with caplog.at_level(logging.ERROR, logger="aiormq"):
        returned = await publish_unroutable(channel, message_id)
    assert not returned, SWITCH
    # The return did reach aiormq (this test still shows something): it logged and dropped it.
    dropped = [r for r in caplog.records if r.name.startswith("aiormq") and "return" in r.msg]
    assert dropped, "no Basic.Return reached aiormq's handler: this test no longer shows the defect"
    # And the channel survives it: the body was read off the wire.
    assert not channel.is_closed


async def test_return_with_confirms_reaches_the_callbacks(
    connection: aiormq.abc.AbstractConnection,
) -> None:
    """The contrast: on a confirming channel (what the workaround avoids paying for) the same
    return reaches the callbacks and comes back as the publish's result."""
    # on_return_raises=False: the returned message as the publish's result, not an error.
    channel = await connection.channel(publisher_confirms=True, on_return_raises=False)
    returned: list[aiormq.abc.DeliveredMessage] = []
    channel.on_return_callbacks.add(returned.append)
    # Typed as an ack frame; a returned message comes back as the result.
    result: object = await channel.basic_publish(
        b"nobody serves this",
        exchange="",
        routing_key=f"test.{uuid.uuid4().hex[:8]}.nobody",
        properties=Basic.Properties(message_id="m-2", correlation_id="c-2"),
        mandatory=True,
    )
    assert isinstance(result, aiormq.abc.DeliveredMessage)
    assert [m.header.properties.correlation_id for m in returned] == ["c-2"]
