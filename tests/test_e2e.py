"""End to end: the three services as separate OS processes over the real RabbitMQ.

Each test gets a RabbitMQ vhost, free ports and databases of its own (SQLite files, or
PostgreSQL databases created for it), and talks HTTP to drama-service like a client would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import aio_pika
import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from loadtest.devstack.stack import Stack
from tests.conftest import PG_URL, StackConfigFactory, free_port

pytestmark = pytest.mark.timeout(120)

StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
async def pg_database() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Creates PostgreSQL databases on demand (returns their URLs); drops them afterwards."""
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    async def create() -> str:
        name = f"test_{uuid.uuid4().hex[:10]}"
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return PG_URL.rsplit("/", 1)[0] + f"/{name}"

    yield create
    async with admin.connect() as conn:
        for name in created:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


# Admission bounds above the bursts some tests send at once (drama-service's defaults shed
# past 64 requests in flight).
ABOVE_THE_BURST = {"HTTP_MAX_IN_FLIGHT": "400", "RPC_MAX_WAITING": "400"}


@pytest.fixture
def make_stack(stack_config: StackConfigFactory) -> StackFactory:
    def factory(**overrides: Any) -> Stack:
        return Stack(stack_config(media_dramas=2, **overrides))

    return factory


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with http.get(url) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def walk_pages(http: aiohttp.ClientSession, base: str, limit: int) -> list[int]:
    ids: list[int] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, _, page = await get_json(http, f"{base}/dramas{query}")
        assert status == 200, page
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_detail_pages_and_streams(
    backend: str,
    make_stack: StackFactory,
    pg_database: Callable[[], Awaitable[str]],
    http: aiohttp.ClientSession,
) -> None:
    overrides: dict[str, Any] = {}
    if backend == "postgresql":
        overrides = {
            "drama_database_url": await pg_database(),
            "episode_database_url": await pg_database(),
        }
    async with make_stack(**overrides) as stack:
        base = stack.config.base_url
        status, content_type, drama = await get_json(http, f"{base}/dramas/1")
        assert (status, content_type) == (200, "application/json")
        assert drama["id"] == 1
        assert drama["episode_count"] == len(drama["episodes"]) > 0
        assert [e["number"] for e in drama["episodes"]] == list(
            range(1, len(drama["episodes"]) + 1)
        )
        stream = drama["episodes"][0]["stream"]
        assert dt.datetime.fromisoformat(stream["expires_at"]) > dt.datetime.now(dt.UTC)
        async with http.get(stream["url"]) as media:
            assert media.status == 200
            assert (await media.text()).startswith("#EXTM3U")

        ids = await walk_pages(http, base, limit=6)
        assert ids == list(range(1, 21))  # every drama once, none repeated, in order


async def test_expired_url_is_refused(
    make_stack: StackFactory, http: aiohttp.ClientSession
) -> None:
    # Two seconds: X-Amz-Date has whole seconds, so a URL signed at hh:mm:ss.9 with a lifetime
    # of one second was valid for 0.1 s, and the fetch below got a 403 on a busy machine.
    async with make_stack(env={"PRESIGN_TTL_S": "2"}) as stack:
        _, _, drama = await get_json(http, f"{stack.config.base_url}/dramas/1")
        stream = drama["episodes"][0]["stream"]
        async with http.get(stream["url"]) as fresh:
            assert fresh.status == 200
        # Waiting out the lifetime is the behaviour under test, not synchronisation.
        expires_at = dt.datetime.fromisoformat(stream["expires_at"])
        await asyncio.sleep((expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 1.1)
        async with http.get(stream["url"]) as stale:
            assert stale.status == 403
            assert "Request has expired" in await stale.text()


async def test_200_concurrent_requests_get_their_own_drama(
    make_stack: StackFactory, http: aiohttp.ClientSession
) -> None:
    # Past HTTP_MAX_IN_FLIGHT (64) a burst is shed with 503 (issue 19); this test is about
    # matching 200 concurrent replies to their requests, so the bound is raised above them.
    async with make_stack(seed_dramas=200, env=ABOVE_THE_BURST) as stack:
        base = stack.config.base_url
        results = await asyncio.gather(
            *(get_json(http, f"{base}/dramas/{i}") for i in range(1, 201))
        )
    assert [status for status, _, _ in results] == [200] * 200
    assert [body["id"] for _, _, body in results] == list(range(1, 201))


async def test_stopped_worker_costs_a_fast_error(
    make_stack: StackFactory, http: aiohttp.ClientSession
) -> None:
    async with make_stack(env={"RPC_TIMEOUT_MS": "1000"}) as stack:
        assert await stack.stop_process("episode") == 0  # a clean exit on SIGTERM
        started = time.monotonic()
        status, content_type, problem = await get_json(http, f"{stack.config.base_url}/dramas/1")
        elapsed = time.monotonic() - started
    assert status in (503, 504)
    assert content_type == "application/problem+json"
    assert problem["status"] == status
    assert elapsed < 1.0 + 1.0


async def consumers(amqp_url: str, queues: tuple[str, ...]) -> list[int]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = [await channel.declare_queue(name, passive=True) for name in queues]
        return [q.declaration_result.consumer_count or 0 for q in declared]


async def test_broker_connections_closed_under_load(
    make_stack: StackFactory, http: aiohttp.ClientSession, vhost: str
) -> None:
    async with make_stack() as stack:
        base = stack.config.base_url
        stop = asyncio.Event()
        # (status, started, duration) of every request
        outcomes: list[tuple[int, float, float]] = []
        progress = asyncio.Condition()

        async def client(drama_id: int) -> None:
            while not stop.is_set():
                started = time.monotonic()
                async with http.get(f"{base}/dramas/{drama_id}") as response:
                    await response.read()
                async with progress:
                    outcomes.append((response.status, started, time.monotonic() - started))
                    progress.notify_all()

        async def answered(count: int) -> None:
            async with progress:
                await progress.wait_for(lambda: len(outcomes) >= count)

        load = [asyncio.create_task(client(i % 20 + 1)) for i in range(20)]
        await answered(50)  # the load is running
        closing = time.monotonic()
        closer = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-q", "close_all_connections", "-p", vhost, "e2e: connection closed"
        )
        assert await closer.wait() == 0
        # drama-service has seen its connection go (a request failed since), so that a
        # readiness probe answered before it noticed cannot pass for a recovery.
        try:
            async with asyncio.timeout(20), progress:
                await progress.wait_for(lambda: any(s != 200 for s, *_ in outcomes))
        except TimeoutError:
            raise AssertionError(
                f"no request failed in the 20 s after the connections were closed "
                f"({len(outcomes)} answered, all 200): the outage went unnoticed"
            ) from None
        # Recovered: drama-service ready again and both workers consuming again.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            async with http.get(f"{base}/readyz") as ready:
                if ready.status == 200 and 0 not in await consumers(
                    stack.config.amqp_url, ("rpc.episode", "rpc.stream")
                ):
                    break
            await asyncio.sleep(0.05)
        recovered = time.monotonic()
        await answered(len(outcomes) + 50)  # and runs on after recovery
        stop.set()
        await asyncio.gather(*load)
    # In flight when drama-service lost its connection: sent before the first failure came
    # back, so on the old connection, and not answered before the close was asked for. A
    # request sent later may have gone over the new connection before the workers were back
    # (rabbitmqctl can take longer than the 1 s reconnect interval on a loaded machine): it
    # waits for them, as it should, and is not one of these.
    lost_at = min(started + d for s, started, d in outcomes if s != 200)
    pending = [(s, d) for s, started, d in outcomes if started < lost_at and started + d > closing]
    failed = [(s, d) for s, d in pending if s != 200]
    assert failed, "closing the connections failed no pending request: nothing was tested"
    # They failed fast with a 503, not at the 3 s timeout.
    slow_or_other = [(s, d) for s, d in failed if s != 503 or d >= 2.0]
    assert not slow_or_other, f"{slow_or_other} of {len(failed)} failed requests"
    # During the outage: 200, a fast 503, or (workers still reconnecting) a 504; never a 500.
    assert {s for s, _, _ in outcomes} <= {200, 503, 504}
    after = [s for s, started, _ in outcomes if started > recovered]
    assert after, "no request after recovery"
    assert all(s == 200 for s in after), after


async def test_sigterm_during_load_loses_no_accepted_request(
    make_stack: StackFactory, http: aiohttp.ClientSession
) -> None:
    async with make_stack(env=ABOVE_THE_BURST) as stack:
        base = stack.config.base_url
        # A second episode worker takes over the queue when the first one drains and exits.
        await stack.start_process("episode2", "episode", env={"METRICS_PORT": str(free_port())})
        requests = [
            asyncio.create_task(get_json(http, f"{base}/dramas/{i % 20 + 1}")) for i in range(120)
        ]
        done, _ = await asyncio.wait(requests, return_when=asyncio.FIRST_COMPLETED)
        assert await stack.stop_process("episode") == 0
        assert await stack.stop_process("drama") == 0
        results = await asyncio.gather(*requests, return_exceptions=True)
    answered = [r for r in results if not isinstance(r, BaseException)]
    # Not accepted: a connection refused once the port closed, or an idle keep-alive connection
    # the server closed as it stopped, with the request still on its way (aiohttp closes only
    # connections with no request in progress; a client retries those, as HTTP allows).
    not_accepted = (
        aiohttp.ClientConnectorError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
    )
    refused = [r for r in results if isinstance(r, not_accepted)]
    assert len(answered) + len(refused) == len(results), [
        r for r in results if isinstance(r, BaseException)
    ]
    assert [status for status, _, _ in answered] == [200] * len(answered)
    assert len(answered) > len(done)
