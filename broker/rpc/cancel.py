"""A caller that gives up tells the worker: its handler stops, its prefetch slot frees.

A call cancelled before its reply (drama-service's client went away, and aiohttp's
``handler_cancellation`` cancelled the handler and so the call) publishes a *cancel notice* to
the ``rpc.cancel`` direct exchange: no body, the call's ``correlation_id``, the method as routing
key. Every worker replica binds a private queue to it with the routing keys of its methods
(``rpc.cancel.<queue>.<host>-<pid>``), so the notice reaches the replica that holds the request,
wherever it is:

* handling it: the handler's deadline is brought forward to now, so it is cancelled the way a
  request past its deadline is; the request is acked without a reply (outcome ``cancelled``);
* not delivered yet (still in the queue, or prefetched behind others): its id is remembered for
  a minute, and when it is delivered it is acked at once without running.

A timeout needs no notice: the request carries its deadline and the worker drops it there. The
notice is best effort (not mandatory, no confirm): lost, the worker runs the request until its
deadline, as it did before. The request and reply format (protocol v1) is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

import aio_pika
import aio_pika.abc
import aiormq.abc
from cachetools import TTLCache
from pamqp.commands import Basic

from broker.rpc.faults import instance
from broker.rpc.wire import Topology
from broker.telemetry.metrics import RPC_CANCEL_NOTICES

log = logging.getLogger(__name__)

_REMEMBERED = 100_000  # notices for requests not delivered yet, at most
_REMEMBER_S = 60.0  # longer than any request's deadline is likely to be


def cancel_queue_name(cancel_exchange: str, queue: str) -> str:
    """A worker's private queue on the cancel exchange, named after whose it is."""
    return f"{cancel_exchange}.{queue.removeprefix('rpc.')}.{instance()}"


class Cancellations:
    """A worker's requests that can be cancelled, and the notices that came before them."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Timeout] = {}
        self._noticed: TTLCache[str, bool] = TTLCache(_REMEMBERED, _REMEMBER_S)

    def noticed(self, correlation_id: str | None) -> bool:
        """Whether the caller of this request has given up (a notice came for it)."""
        return correlation_id is not None and correlation_id in self._noticed

    @contextlib.contextmanager
    def running(self, correlation_id: str | None, scope: asyncio.Timeout) -> Iterator[None]:
        """While the handler of ``correlation_id`` runs inside ``scope`` (its deadline)."""
        if correlation_id is None:
            yield
            return
        self._running[correlation_id] = scope
        try:
            yield
        finally:
            self._running.pop(correlation_id, None)

    def notice(self, correlation_id: str) -> None:
        """The caller of ``correlation_id`` gave up: stop its handler, or never start it."""
        self._noticed[correlation_id] = True
        scope = self._running.get(correlation_id)
        if scope is not None and not scope.expired():
            scope.reschedule(asyncio.get_running_loop().time())


async def listen_for_cancels(
    channel: aio_pika.abc.AbstractChannel,
    topology: Topology,
    queue: str,
    methods: Iterable[str],
    cancellations: Cancellations,
) -> None:
    """Bind a private queue to the cancel exchange with ``methods`` and feed ``cancellations``
    (a worker of ``queue``)."""
    exchange = await channel.declare_exchange(
        topology.cancel_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    private = await channel.declare_queue(
        cancel_queue_name(topology.cancel_exchange, queue), exclusive=True, auto_delete=True
    )
    for method in methods:
        await private.bind(exchange, routing_key=method)
    notices = RPC_CANCEL_NOTICES.labels(queue)

    async def on_notice(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        if message.correlation_id:
            notices.inc()
            cancellations.notice(message.correlation_id)

    await private.consume(on_notice, no_ack=True)


async def send_cancel(
    channel: aiormq.abc.AbstractChannel, topology: Topology, method: str, correlation_id: str
) -> None:
    """Tell the workers of ``method`` that the call ``correlation_id`` was given up."""
    with contextlib.suppress(Exception):  # best effort: the deadline stops the work anyway
        await channel.basic_publish(
            b"",
            exchange=topology.cancel_exchange,
            routing_key=method,
            properties=Basic.Properties(correlation_id=correlation_id),
        )


def announce_cancel(
    tasks: set[asyncio.Task[None]],
    channel: aiormq.abc.AbstractChannel | None,
    topology: Topology,
    method: str,
    correlation_id: str,
) -> None:
    """:func:`send_cancel` in a task of its own (kept in ``tasks`` until done): the caller's
    own task is being cancelled. Nothing without an open channel."""
    if channel is None or channel.is_closed:
        return
    task = asyncio.get_running_loop().create_task(
        send_cancel(channel, topology, method, correlation_id)
    )
    tasks.add(task)
    task.add_done_callback(tasks.discard)
