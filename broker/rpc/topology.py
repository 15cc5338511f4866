"""What a caller declares on the broker before its first call (idempotent declarations)."""

from __future__ import annotations

import aio_pika
import aio_pika.abc

from broker.rpc import unroutable
from broker.rpc.wire import Topology


async def declare_for_callers(channel: aio_pika.abc.AbstractChannel, topology: Topology) -> None:
    """The exchanges a caller publishes to, and the alternate exchange's queue it answers."""
    # The exchange is the client's contract with the workers; declaring it lets the client
    # start before any worker and get fast "unroutable" answers.
    await channel.declare_exchange(topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    # Where returned (unroutable) requests are kept, as the workers declare it.
    await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    # Where the alternate exchange puts unroutable requests (broker.rpc.unroutable).
    await unroutable.declare(channel, topology)
    # Where a call given up is announced to the workers (broker.rpc.cancel).
    await channel.declare_exchange(
        topology.cancel_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
