"""The delaying TCP proxy of the dev stack: a delay each way, the stream kept in order, and
its rules set over the broker's control exchange like the workers' faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from broker import FaultRule, Topology, send_fault_rule
from broker._faults import Faults
from loadtest.devstack.netdelay import Link, NetDelay


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    """A link in front of an echo server; on exit every connection of both is closed."""
    handlers: set[asyncio.Task[None]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the proxy aborted its side on close
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxied = Link("echo", ("127.0.0.1", 0), ("127.0.0.1", port))
    await proxied.start()
    yield proxied
    await proxied.close()
    server.close()
    await server.wait_closed()
    await asyncio.gather(*handlers)


async def round_trip(link: Link, payload: bytes) -> float:
    reader, writer = await asyncio.open_connection(*link.listen)
    try:
        started = time.perf_counter()
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        return time.perf_counter() - started
    finally:
        writer.close()
        await writer.wait_closed()


async def test_each_direction_gets_its_own_delay(link: Link) -> None:
    assert await round_trip(link, b"ping") < 0.05  # no rule: forwarded as read
    link.apply(FaultRule(network_delay_ms=30, network_direction="request"))
    assert await round_trip(link, b"ping") >= 0.030
    link.apply(FaultRule(network_delay_ms=40, network_direction="reply"))
    # Both ways now: 30 there, 40 back.
    assert await round_trip(link, b"ping") >= 0.070
    assert link.rule() == FaultRule(
        network_link="echo", network_delay_ms=30, network_direction="request"
    )
    link.apply(FaultRule(clear=True))
    assert link.rule() is None


async def test_jitter_keeps_the_stream_in_order_and_delays_do_not_add_up(link: Link) -> None:
    link.apply(FaultRule(network_delay_ms=10, network_jitter_ms=10))
    reader, writer = await asyncio.open_connection(*link.listen)
    chunks = [f"{n:05d};".encode() for n in range(300)]
    started = time.perf_counter()
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)  # one chunk per read on the proxy's side, mostly
    received = await reader.readexactly(sum(map(len, chunks)))
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    assert received == b"".join(chunks)
    # Each chunk leaves at its arrival + its delay (at most 20 ms each way): 300 chunks delayed
    # one after the other would take seconds.
    assert elapsed < 1.5


async def test_rules_come_over_the_control_exchange(
    link: Link, amqp_url: str, topology: Topology
) -> None:
    proxy = NetDelay([link], amqp_url, topology.control_exchange)
    await proxy.start()
    try:
        exchange = topology.control_exchange
        rule = FaultRule(network_delay_ms=7, network_jitter_ms=1)
        (ack,) = await send_fault_rule(amqp_url, rule, exchange=exchange, expect=1, wait=10)
        assert ack.queue == "netdelay"
        expected = FaultRule(network_link="echo", network_delay_ms=7, network_jitter_ms=1)
        assert ack.rules == {"echo": expected}
        assert (link.delays["reply"].ms, link.delays["reply"].jitter_ms) == (7, 1)
        # A worker's rule is not the proxy's: it does not answer, nor change.
        assert not await send_fault_rule(
            amqp_url, FaultRule(delay_ms=5), exchange=exchange, wait=0.5
        )
        (ack,) = await send_fault_rule(
            amqp_url, FaultRule(clear=True), exchange=exchange, expect=1, wait=10
        )
        assert ack.rules == {}
        assert await round_trip(link, b"x") < 0.5
    finally:
        await proxy.close()


def test_workers_leave_network_rules_alone() -> None:
    faults = Faults("rpc.episode", 8)
    faults.methods.add("episode.list")
    assert not faults.matches(FaultRule(network_delay_ms=5))
    assert faults.matches(FaultRule(clear=True))
