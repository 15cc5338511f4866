"""The wire's share of a queue wait: transit (to the broker and from it) apart from dwell.

A request's queue wait runs from the caller's publish stamp (``x-sent-at-ns``) to the worker's
delivery. It holds three things: the request on the wire to the broker, the request in the
queue (dwell), and the request on the wire from the broker to the worker. Only the sum is
measured directly; the parts are split here (docs/analysis.md, "Queue wait: transit and
dwell"):

* each side measures its own connection's round trip to the broker (:class:`BrokerRoundTrip`:
  a passive ``exchange.declare`` on a channel of its own, five times a second, the least of
  the last seven) and takes half of it as the one-way time;
* the caller sends its half in ``x-transit-ns``; the worker adds its own half: that is the
  transit. Where the broker stamps the message as it enters (RabbitMQ 3.12+,
  ``message_interceptors.incoming.set_header_timestamp``: ``timestamp_in_ms``), the way in is
  measured from it instead (millisecond resolution, the two hosts' clock skew);
* the transit is clamped to the measured wait, and the dwell is the rest: the two always add up
  to the queue wait.

Spans carry both (``rpc.queue_transit_ms``, ``rpc.queue_dwell_ms`` on the ``queue wait`` span),
and so do metrics (``rpc_queue_transit_seconds``, ``rpc_queue_dwell_seconds``);
``rpc_queue_wait_seconds`` stays the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika.abc

from broker.rpc.wire import header_int
from broker.telemetry.metrics import (
    RPC_BROKER_ROUND_TRIP,
    RPC_QUEUE_DWELL,
    RPC_QUEUE_TRANSIT,
    labelled,
)

log = logging.getLogger("broker._transit")  # its name before broker/ had packages

TRANSIT_NS = "x-transit-ns"  # the caller's one-way time to the broker (half its round trip)
BROKER_STAMP_MS = "timestamp_in_ms"  # RabbitMQ 3.12+ set_header_timestamp: entry, wall clock ms


class BrokerRoundTrip:
    """One connection's round trip to the broker: the least of the last ``window`` probes, one
    every ``interval`` seconds. The least, as TCP's min RTT: a probe that waited for a busy
    event loop (this one, or the broker's) says nothing about the wire. A slower wire shows in
    ``window * interval`` seconds, a faster one at once."""

    def __init__(self, interval: float = 0.2, window: int = 7) -> None:
        self._interval = interval
        self._samples: deque[int] = deque(maxlen=window)
        self._least_ns = 0

    def half_ns(self) -> int:
        """The one-way estimate: half the round trip (0 before the first probe)."""
        return self._least_ns // 2

    def add(self, round_trip_ns: int) -> None:
        self._samples.append(round_trip_ns)
        self._least_ns = min(self._samples)
        RPC_BROKER_ROUND_TRIP.set(self._least_ns / 1e9)

    async def run(
        self, connection: aio_pika.abc.AbstractConnection, stop: asyncio.Event | None = None
    ) -> None:
        """Probe until ``stop`` is set (or cancelled), on a channel of its own (a robust
        connection reopens it after a reconnection; probes that fail meanwhile are skipped)."""
        stop = stop or asyncio.Event()
        channel = await connection.channel()
        try:
            while not stop.is_set():
                try:
                    amqp = await channel.get_underlay_channel()
                    started = time.perf_counter_ns()
                    # A round trip the broker answers at once and that changes nothing.
                    await amqp.exchange_declare("amq.direct", passive=True)
                    self.add(time.perf_counter_ns() - started)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the connection recovers on its own
                    log.debug("broker round trip probe failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    @contextlib.asynccontextmanager
    async def measuring(self, connection: aio_pika.abc.AbstractConnection) -> AsyncIterator[None]:
        """Probe ``connection`` for the duration of the block. On leaving, a probe in flight
        may finish (cancelled mid-declare, aiormq closes its channel with a warning, which a
        service stopping should not log); one the broker does not answer within 1 s is not
        waited for."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(connection, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait({task}, timeout=1)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def split(
    headers: Mapping[str, Any], sent_at: int | None, wait_ns: int, own_half_ns: int
) -> tuple[int, int]:
    """``(transit_ns, dwell_ns)`` of a queue wait of ``wait_ns``: they add up to it."""
    if sent_at is None:
        return 0, wait_ns
    stamp_ms = header_int(headers, BROKER_STAMP_MS)
    if stamp_ms is not None:
        way_in = max(0, stamp_ms * 1_000_000 - sent_at)
    else:
        way_in = max(0, header_int(headers, TRANSIT_NS) or 0)
    transit = min(wait_ns, way_in + own_half_ns)
    return transit, wait_ns - transit


def transit_attributes(transit_ns: int, dwell_ns: int) -> dict[str, float]:
    """The ``queue wait`` span's parts, in ms."""
    return {"rpc.queue_transit_ms": transit_ns / 1e6, "rpc.queue_dwell_ms": dwell_ns / 1e6}


def observe(method: str, transit_ns: int, dwell_ns: int, exemplar: dict[str, str] | None) -> None:
    """The parts into their histograms (``rpc_queue_wait_seconds`` has their sum)."""
    labelled(RPC_QUEUE_TRANSIT, method).observe(transit_ns / 1e9, exemplar)
    labelled(RPC_QUEUE_DWELL, method).observe(dwell_ns / 1e9, exemplar)
