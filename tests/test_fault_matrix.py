"""The fault matrix: the stack as processes (``loadtest.devstack.stack``), open-loop load running
(``loadtest.load.runner``), one fault each, and what the clients saw asserted.

Every case: no request hung (none past its deadline + 1 s, no client timeout), every answer
one of the documented statuses, failures fast once noticed (a 503 in milliseconds), the system
serving again after the fault, and nothing dead-lettered without its reason. The overload case
measures the capacity first, in the same test, then offers twice that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiohttp
import msgspec
import pytest

from loadtest.devstack.stack import Stack
from loadtest.devstack.supervise import supervise
from loadtest.load.command import discover
from loadtest.load.recorder import Recorder
from loadtest.load.runner import open_loop
from loadtest.load.schedule import constant_arrivals, parse_mix, plan, requests
from tests.conftest import StackConfigFactory
from tests.test_api import rabbitmqctl
from tests.test_outages import Database, bring_up, take_down
from tests.test_outages import database as database  # noqa: PLC0414 - a fixture used here

DEADLINE_S = 1.0  # REQUEST_TIMEOUT_MS of these stacks
ENV = {
    "OTEL_TRACES_EXPORTER": "none",
    "RPC_TIMEOUT_MS": str(int(DEADLINE_S * 1000)),
    "BREAKER_COOLDOWN_MS": "300",
    "FAULTS_ENABLED": "false",
    "CACHE_TTL_MS": "0",
    # Sized for the 1 s deadline (docs/rpc.md): ~250/s x 0.25 s of queueing at most.
    "HTTP_MAX_IN_FLIGHT": "64",
    "RPC_MAX_WAITING": "48",
    "HTTP_IDLE_TIMEOUT_S": "2",
}

pytestmark = [pytest.mark.timeout(120), pytest.mark.timing]


@dataclass
class ByOutcome(Recorder):
    """A :class:`Recorder` that also keeps each outcome's latencies."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, scenario: str, outcome: int | str, seconds: float) -> None:
        super().add(scenario, outcome, seconds)
        self.latencies[str(outcome)].append(seconds)

    def count(self, outcome: str) -> int:
        return len(self.latencies.get(outcome, []))

    def p99(self, outcome: str) -> float:
        values = sorted(self.latencies.get(outcome, []))
        return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0

    @property
    def worst(self) -> float:
        return max((max(v) for v in self.latencies.values() if v), default=0.0)


async def load(
    base_url: str,
    rate: float,
    duration: float,
    fault: Callable[[], Awaitable[None]] | None = None,
    *,
    fault_at: float = 1.0,
) -> ByOutcome:
    """Open-loop GET /dramas/{id} at ``rate`` for ``duration`` s; ``fault`` runs at
    ``fault_at`` s into it."""
    recorder = ByOutcome()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        catalogue = await discover(session, base_url)
        source = requests(parse_mix("detail=1"), catalogue, random.Random(19))  # noqa: S311 - a load schedule
        shots = plan(constant_arrivals(rate, duration), source)
        sending = asyncio.create_task(
            open_loop(
                session,
                base_url,
                shots,
                warmup=0,
                timeout=10,
                max_in_flight=10_000,
                recorder=recorder,
                progress=lambda: None,
            )
        )
        if fault is not None:
            await asyncio.sleep(fault_at)  # when in the schedule the fault strikes
            await fault()
        await sending
    return recorder


def assert_bounded(result: ByOutcome, allowed: set[str]) -> None:
    """Nothing hung, every answer documented, 503s fast."""
    outcomes = set(result.latencies)
    assert outcomes <= allowed, {k: len(v) for k, v in result.latencies.items()}
    assert result.worst <= DEADLINE_S + 1, result.worst
    if result.count("503") >= 10:
        # Fast: at once, not after waiting out the deadline. Alone the 503s' p99 is 20-40 ms
        # (both cores kept busy by spin loops included), but beside the other timing tests on
        # the 2-core machine it was 261, 340 and 634 ms (CI): the bound is half the deadline,
        # which a 503 that waited for a timeout cannot meet.
        slowest = sorted(result.latencies["503"])[-5:]
        assert result.p99("503") < DEADLINE_S / 2, (
            result.count("503"),
            [round(x, 3) for x in slowest],
        )


async def serving_again(base_url: str) -> None:
    """Ready again, and a request succeeds (bounded)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(45):
        while True:
            async with session.get(f"{base_url}/readyz") as ready:
                if ready.status == 200:
                    async with session.get(f"{base_url}/dramas/1") as response:
                        if response.status == 200:
                            return
            await asyncio.sleep(0.2)  # polling a remote process's readiness


async def dead_letters(amqp_url: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue("rpc.dead", passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return []
        messages = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            messages.append(message)
        return messages


def reason(message: aio_pika.abc.AbstractIncomingMessage) -> str:
    """The worker's reason, or RabbitMQ's (x-death) for what the broker dead-lettered."""
    headers = message.headers or {}
    if "x-dead-letter-reason" in headers:
        return str(headers["x-dead-letter-reason"])
    deaths = headers.get("x-death")
    assert isinstance(deaths, list)
    first = deaths[0]
    assert isinstance(first, dict)
    return str(first["reason"])


async def assert_dead_letters_explained(amqp_url: str, allowed: set[str]) -> None:
    """Every dead letter has a reason, and only these (a request that expired is no loss:
    its caller had its answer already)."""
    reasons = [reason(m) for m in await dead_letters(amqp_url)]
    assert set(reasons) <= allowed, reasons


@pytest.fixture
async def running(stack_config: StackConfigFactory) -> AsyncIterator[Stack]:
    async with Stack(stack_config(env=ENV)) as stack:
        yield stack


def _signal(stack: Stack, name: str, signum: int) -> None:
    os.kill(stack.processes[name].pid, signum)


async def test_worker_kill_9_is_noticed_and_restarted(running: Stack) -> None:
    base = running.config.base_url
    messages: list[str] = []
    keeper = asyncio.create_task(supervise(running, ["episode"], say=messages.append))
    try:
        old = running.processes["episode"].pid

        async def kill() -> None:
            _signal(running, "episode", signal.SIGKILL)

        result = await load(base, rate=40, duration=5, fault=kill)
        assert_bounded(result, {"200", "503", "504"})
        assert result.count("503") > 0  # the breaker (or no consumer) made failures fast
        await serving_again(base)
        assert running.processes["episode"].pid != old
        assert any("episode exited with status -9" in m for m in messages), messages
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    await assert_dead_letters_explained(running.config.amqp_url, {"expired"})


async def test_frozen_worker_fails_fast_then_recovers(running: Stack) -> None:
    base = running.config.base_url

    async def freeze() -> None:
        _signal(running, "stream", signal.SIGSTOP)
        await asyncio.sleep(2.5)  # frozen this long, while the load runs
        _signal(running, "stream", signal.SIGCONT)

    result = await load(base, rate=40, duration=5, fault=freeze)
    assert_bounded(result, {"200", "503", "504"})
    assert result.count("503") > result.count("504")  # the breaker, not a timeout each
    assert result.count("200") > 0
    await serving_again(base)
    await assert_dead_letters_explained(running.config.amqp_url, {"expired"})


@pytest.mark.parametrize("fault", ["connection-cut", "permissions-revoked", "queue-deleted"])
async def test_broker_faults(fault: str, running: Stack, vhost: str) -> None:
    base, amqp_url = running.config.base_url, running.config.amqp_url

    async def strike() -> None:
        if fault == "connection-cut":
            await rabbitmqctl("close_all_connections", "-p", vhost, "fault matrix: cut")
        elif fault == "permissions-revoked":
            await rabbitmqctl("clear_permissions", "-p", vhost, "guest")
            await rabbitmqctl("close_all_connections", "-p", vhost, "fault matrix: revoked")
            await asyncio.sleep(1.5)  # the outage lasts this long
            await rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        else:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete("rpc.stream")

    result = await load(base, rate=40, duration=5, fault=strike)
    assert_bounded(result, {"200", "503", "504"})
    assert result.count("200") > 0
    await serving_again(base)
    # With its queue gone a request is unroutable: returned, answered 503, and kept as such.
    kept = {"expired", "unroutable"} if fault == "queue-deleted" else {"expired"}
    await assert_dead_letters_explained(amqp_url, kept)


async def test_poison_messages_are_answered_or_explained(running: Stack) -> None:
    base, amqp_url = running.config.base_url, running.config.amqp_url
    replies: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def poison() -> None:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            reply_queue = await channel.declare_queue(exclusive=True)
            exchange = await channel.get_exchange("rpc")
            good = msgspec.json.encode({"drama_ids": [1]})
            cases: list[tuple[bytes, dict[str, Any], str | None]] = [
                (b"{not json", {}, reply_queue.name),
                (b'{"drama_ids": "one"}', {}, reply_queue.name),
                (good, {"traceparent": 42, "x-sent-at-ns": "later"}, reply_queue.name),
                (good, {}, None),  # no reply_to: cannot be answered
            ]
            for body, headers, reply_to in cases:
                await exchange.publish(
                    aio_pika.Message(body, headers=headers, reply_to=reply_to, correlation_id="p"),
                    routing_key="episode.list",
                )
            async with reply_queue.iterator(timeout=10) as it:
                for _ in range(3):
                    message = await anext(it)
                    await message.ack()
                    replies.append(message)

    result = await load(base, rate=40, duration=4, fault=poison)
    assert_bounded(result, {"200"})  # the valid traffic did not notice
    kinds = sorted(
        "result" if "result" in (body := msgspec.json.decode(m.body)) else body["error"]["type"]
        for m in replies
    )
    assert kinds == ["bad_request", "bad_request", "result"]
    dead = await dead_letters(amqp_url)
    assert sorted(reason(m) for m in dead) == ["bad_request", "bad_request", "bad_request"]
    assert all(m.headers.get("x-dead-letter-detail") for m in dead)


@pytest.mark.solo  # measures the machine's capacity, then saturates it: alone, last
async def test_twice_the_capacity_sheds_fast_and_keeps_goodput(
    stack_config: StackConfigFactory,
) -> None:
    """Capacity measured here (closed loop, 32 users), then 2x offered open loop, with the
    default deadline (3 s): 64 in flight is ~0.3 s of queueing at this machine's capacity."""
    deadline = 3.0
    env = ENV | {"RPC_TIMEOUT_MS": str(int(deadline * 1000))}
    async with Stack(stack_config(env=env)) as running:
        await _overload(running, deadline)


async def _overload(running: Stack, deadline: float) -> None:
    base = running.config.base_url
    # The load runs in a process of its own, as a client would: on a busy machine, sharing
    # the test's event loop would make the generator, not the server, the bottleneck.
    capacity = (await _probe(base, "capacity"))["rate_ok"]
    assert capacity > 20, capacity
    result = await _probe(base, "overload", str(2 * capacity))
    goodput = result["rate_ok"]
    # Measured again after: the machine is shared, and its capacity may have moved meanwhile;
    # the run is compared with the lower of the two.
    capacity = min(capacity, (await _probe(base, "capacity"))["rate_ok"])
    print(
        f"capacity {capacity:.0f}/s; at {2 * capacity:.0f}/s offered: goodput {goodput:.0f}/s, "
        f"503 {result['counts'].get('503', 0)} (p99 {result['p99_503'] * 1000:.1f} ms), "
        f"worst {result['worst'] * 1000:.0f} ms"
    )
    assert set(result["counts"]) <= {"200", "503", "504"}
    assert result["worst"] <= deadline + 1
    assert result["counts"].get("503", 0) > 0
    # Measured from each request's intended send time, generator and drama's loop lag
    # included, on a machine the whole stack shares: 9 ms p50, 78-90 ms p99 on 2 busy cores,
    # 150-490 ms p99 while other test suites ran beside it (docs/rpc.md, "Overload"). Bounded
    # at a sixth of the deadline, not at the 50 ms aimed for: before admission control no
    # request got an answer in under 3 s at this load.
    assert result["p99_503"] < deadline / 6
    assert goodput >= 0.8 * capacity
    await assert_dead_letters_explained(running.config.amqp_url, {"expired"})


async def _probe(base: str, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.overload_probe", base, *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


async def test_databases_refusing_connections(
    stack_config: StackConfigFactory, database: Database
) -> None:
    """drama-service's and episode-service's PostgreSQL databases (of this test) go down for
    2 s under load: fast 503s, nothing dead-lettered, serving again after."""
    drama_url, episode_url = await database(), await database()
    config = stack_config(env=ENV, drama_database_url=drama_url, episode_database_url=episode_url)
    async with Stack(config):
        base = config.base_url

        async def outage() -> None:
            await take_down(episode_url)
            await asyncio.sleep(1)  # the worker's database alone, then both
            await take_down(drama_url)
            await asyncio.sleep(1)
            await bring_up(drama_url)
            await bring_up(episode_url)

        result = await load(base, rate=40, duration=5, fault=outage)
        assert_bounded(result, {"200", "503"})
        assert result.count("503") > 0
        assert result.p99("503") < 0.25
        await serving_again(base)
        assert await dead_letters(config.amqp_url) == []


async def test_slow_or_oversized_headers_are_cut_off(running: Stack) -> None:
    """Slowloris: a connection that trickles its headers is closed at HTTP_IDLE_TIMEOUT_S (2 s
    here), while the service keeps answering; a header past 8190 bytes is refused."""
    port = running.config.http_port
    slow = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /dramas/1 HTTP/1.1\r\nHost: x\r\n")
        slow.append((reader, writer))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running.config.base_url}/healthz") as response:
            assert response.status == 200
        async with session.get(
            f"{running.config.base_url}/dramas/1", headers={"X-Big": "a" * 9000}
        ) as response:
            assert response.status in (400, 431)
    try:
        for reader, writer in slow:
            writer.write(b"X-Slow: 1\r\n")  # still sending, never finishing
            async with asyncio.timeout(5):  # closed by the server, or this fails
                # Closed with data unread, the server resets: a close too.
                with contextlib.suppress(ConnectionResetError):
                    assert b"200 OK" not in await reader.read()
    finally:
        for _, writer in slow:
            writer.close()
    assert loop.time() - started < 2 + 3
