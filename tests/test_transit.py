"""The split of a queue wait into transit (on the wire) and dwell (in the queue).

End to end, with real services and a slowed wire, in test_accuracy.py; here the arithmetic,
including RabbitMQ 3.12's broker stamp, which this machine's RabbitMQ (3.10) cannot add."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import pytest

from broker.rpc.transit import BROKER_STAMP_MS, TRANSIT_NS, BrokerRoundTrip, split

MS = 1_000_000


def test_transit_is_both_halves_and_dwell_the_rest() -> None:
    # The caller's half round trip 2 ms, the worker's 1 ms, a 10 ms wait.
    assert split({TRANSIT_NS: 2 * MS}, 0, 10 * MS, 1 * MS) == (3 * MS, 7 * MS)


def test_transit_never_exceeds_the_wait() -> None:
    assert split({TRANSIT_NS: 5 * MS}, 0, 2 * MS, 1 * MS) == (2 * MS, 0)


def test_without_a_sent_at_stamp_it_is_all_dwell() -> None:
    assert split({}, None, 4 * MS, 1 * MS) == (0, 4 * MS)


def test_the_broker_stamp_measures_the_way_in() -> None:
    """With set_header_timestamp (RabbitMQ 3.12+) the way in is measured, not estimated."""
    sent_at = 1_764_000_000_000 * MS  # ms-aligned wall clock, ns
    headers = {BROKER_STAMP_MS: 1_764_000_000_004, TRANSIT_NS: 1 * MS}
    assert split(headers, sent_at, 10 * MS, 1 * MS) == (5 * MS, 5 * MS)
    # A broker clock behind the caller's: the way in is clamped at 0, not negative.
    headers = {BROKER_STAMP_MS: 1_763_999_999_990}
    assert split(headers, sent_at, 10 * MS, 1 * MS) == (1 * MS, 9 * MS)


def test_the_round_trip_is_the_least_of_the_last_probes() -> None:
    rtt = BrokerRoundTrip(window=3)
    assert rtt.half_ns() == 0
    for sample in (900, 400, 2000):
        rtt.add(sample)
    assert rtt.half_ns() == 200
    rtt.add(3000)  # 900 leaves the window, 400 stays the least
    rtt.add(5000)  # 400 leaves: the wire got slower
    assert rtt.half_ns() == 1000


class Probed(BrokerRoundTrip):
    """Says when a probe has come back."""

    def __init__(self) -> None:
        super().__init__(interval=0)  # the next probe goes out at once: one always in flight
        self.probed = asyncio.Event()

    def add(self, round_trip_ns: int) -> None:
        super().add(round_trip_ns)
        self.probed.set()


async def test_leaving_mid_probe_lets_it_finish_quietly(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A service stopping while a probe is in flight: the probe ends, its channel closes
    without aiormq's "Closing channel ... because RPC call ... cancelled" warning (a stopped
    service's log should hold no warning)."""
    rtt = Probed()
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        for _ in range(20):
            async with rtt.measuring(connection):
                await rtt.probed.wait()  # one came back
                rtt.probed.clear()
                # Long enough for the next to go out, too short for most to come back: most
                # of the 20 leave with one in flight (without the fix, the warning came in
                # every run of five).
                await asyncio.sleep(0.0005)
    assert rtt.half_ns() > 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [], [r.getMessage() for r in warnings]
