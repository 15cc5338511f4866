"""Dependency outages and overload at drama-service, in-process against the real broker and a
real PostgreSQL: the status each failure gets, what is logged, what is (not) dead-lettered.

Each test owns its PostgreSQL databases (created, then dropped) and its RabbitMQ virtual host.
A database "goes down" the way an operator takes it down: ``ALLOW_CONNECTIONS false`` and its
backends terminated, so every pooled connection breaks and no new one is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import aio_pika
import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from broker.rpc import AmqpRpcClient, GuardedRpcClient, RpcTimeout, RpcUnavailable
from drama import handlers
from drama.app import create_app
from drama.settings import Settings
from drama.store import DramaStore
from episode.contract import LIST
from episode.settings import Settings as EpisodeSettings
from episode.store import EpisodeStore
from episode.worker import build_worker as build_episode_worker
from tests.conftest import PG_URL
from tests.test_api import (
    CATALOGUE,
    DRAMA,
    Api,
    Hold,
    Media,
    assert_problem,
    stand_in,
    stream_service,
)
from tests.test_api import broker_url as broker_url  # noqa: PLC0414 - fixtures used here
from tests.test_api import media as media  # noqa: PLC0414

Database = Callable[[], Awaitable[str]]


async def _admin(statement: str, **params: str) -> None:
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(statement), params)
    finally:
        await admin.dispose()


@pytest.fixture
async def database() -> AsyncIterator[Database]:
    """Makes PostgreSQL databases of this test alone (URLs), dropped afterwards."""
    names: list[str] = []

    async def make() -> str:
        name = f"test_outage_{uuid.uuid4().hex[:10]}"
        await _admin(f'CREATE DATABASE "{name}"')
        names.append(name)
        return sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    for name in names:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def take_down(url: str) -> None:
    """The database refuses new connections and drops the ones it has."""
    name = sa.make_url(url).database
    await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name",
        name=name or "",
    )


async def bring_up(url: str) -> None:
    await _admin(f'ALTER DATABASE "{sa.make_url(url).database}" ALLOW_CONNECTIONS true')


async def dead_letter_count(broker_url: str) -> int:
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("rpc.dead", passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count


async def until_ok(api: Api, path: str) -> None:
    async with asyncio.timeout(5):
        while (await api.get(path)).status != 200:  # noqa: ASYNC110 - the probe is the event
            await asyncio.sleep(0.05)


async def test_database_outages_are_503_and_lose_nothing(
    database: Database,
    broker_url: str,
    media: Media,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    drama_url, episode_url = await database(), await database()
    store = await DramaStore.open(drama_url)
    await store.seed(CATALOGUE)
    await store.close()
    episodes = await EpisodeStore.open(episode_url)
    await episodes.seed(CATALOGUE)
    path = f"/dramas/{DRAMA.id}"
    async with AsyncExitStack() as stack:
        stack.push_async_callback(episodes.close)
        episode_settings = EpisodeSettings.from_env({"AMQP_URL": broker_url, "CACHE_TTL_MS": "0"})
        await stack.enter_async_context(build_episode_worker(episode_settings, episodes))
        await stack.enter_async_context(stream_service(broker_url, media))
        settings = Settings.from_env(
            {
                "AMQP_URL": broker_url,
                "DATABASE_URL": drama_url,
                "CACHE_TTL_MS": "0",
                "BREAKER_COOLDOWN_MS": "100",
            }
        )
        api = await Api.open(await aiohttp_client(create_app(settings)))
        assert (await api.get(path)).status == 200

        # episode-service's database goes: a typed "unavailable" reply, 503, nothing dead.
        await take_down(episode_url)
        caplog.clear()
        for _ in range(20):
            reply = await api.get(path)
            body = assert_problem(reply, 503, "upstream-unavailable", path)
            assert LIST in body["detail"]
            assert "Error" not in body["detail"]  # no class names
        assert (await api.get("/readyz")).status == 200  # drama's own dependencies are fine
        assert await dead_letter_count(broker_url) == 0
        outage_lines = [r for r in caplog.records if "dependency unavailable" in r.getMessage()]
        assert 1 <= len(outage_lines) <= 2, [r.getMessage() for r in outage_lines]
        assert all(r.exc_info is None for r in caplog.records)
        await bring_up(episode_url)
        # The breaker opened on the "unavailable" answers; its probe finds the worker well.
        await until_ok(api, path)

        # drama-service's own database goes: 503 with Retry-After, readiness says so.
        await take_down(drama_url)
        caplog.clear()
        for _ in range(20):
            assert_problem(await api.get(path), 503, "database-unavailable", path)
        assert_problem(await api.get("/dramas"), 503, "database-unavailable", "/dramas")
        assert_problem(await api.get("/readyz"), 503, "database-unavailable", "/readyz")
        lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
        assert all(r.exc_info is None for r in caplog.records)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        # Back: the pool drops its broken connections and the next requests succeed.
        await bring_up(drama_url)
        assert (await api.get("/readyz")).status == 200
        assert (await api.get(path)).status == 200
        assert await dead_letter_count(broker_url) == 0


async def test_database_on_a_closed_port_is_503(
    database: Database, broker_url: str, aiohttp_client: AiohttpClient
) -> None:
    url = await database()
    store = await DramaStore.open(url)
    await store.seed(CATALOGUE)
    await store.close()
    app = create_app(Settings.from_env({"AMQP_URL": broker_url, "DATABASE_URL": url}))
    api = await Api.open(await aiohttp_client(app))
    # The engine now points at a port nothing listens on (the database "host" is gone).
    closed = sa.make_url(url).set(port=1).render_as_string(hide_password=False)
    store = api.app[handlers.STORE]
    # The app's own engine is put back afterwards, so its cleanup closes its pooled connection
    # (dropped unclosed, asyncpg warns whenever the garbage collector finds it: a flaky error).
    own_engine, store._engine = store._engine, create_async_engine(closed)
    try:
        assert_problem(
            await api.get(f"/dramas/{DRAMA.id}"), 503, "database-unavailable", "/dramas/1"
        )
        assert_problem(await api.get("/readyz"), 503, "database-unavailable", "/readyz")
    finally:
        await store._engine.dispose()
        store._engine = own_engine


async def _pending(api: Api, count: int) -> None:
    """Wait until ``count`` calls wait for their replies."""
    rpc = api.app[handlers.RPC]
    assert isinstance(rpc, AmqpRpcClient)
    async with asyncio.timeout(5):
        # Nothing signals a call's registration or its cancellation: polled, bounded.
        while rpc.pending != count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.timing
@pytest.mark.parametrize("bound", ["admission", "bulkhead"])
async def test_overload_is_shed_at_once(
    bound: str,
    broker_url: str,
    media: Media,
    database: Database,
    aiohttp_client: AiohttpClient,
) -> None:
    """Past HTTP_MAX_IN_FLIGHT (or RPC_MAX_WAITING calls of one method) a request is a 503
    with Retry-After within milliseconds; a client that leaves cancels its RPC."""
    url = await database()
    store = await DramaStore.open(url)
    await store.seed(CATALOGUE)
    await store.close()
    hold = Hold()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(stream_service(broker_url, media))
        await stack.enter_async_context(stand_in(broker_url, LIST, hold))
        stack.callback(hold.release.set)
        limits = {"HTTP_MAX_IN_FLIGHT": "3", "RPC_MAX_WAITING": "0"}
        if bound == "bulkhead":
            limits = {"HTTP_MAX_IN_FLIGHT": "0", "RPC_MAX_WAITING": "3"}
        settings = Settings.from_env(
            {"AMQP_URL": broker_url, "DATABASE_URL": url, "RPC_TIMEOUT_MS": "10000", **limits}
        )
        api = await Api.open(await aiohttp_client(create_app(settings)))
        path = f"/dramas/{DRAMA.id}"
        held = [asyncio.create_task(api.get(path)) for _ in range(3)]
        await _pending(api, 3)
        for _ in range(5):
            reply = await api.get(path)
            if bound == "admission":
                body = assert_problem(reply, 503, "overloaded", path)
                assert "3 requests in flight" in body["detail"]
            else:
                body = assert_problem(reply, 503, "upstream-unavailable", path)
                assert "overloaded" in body["detail"]
                assert LIST in body["detail"]
            assert reply.elapsed < 0.5
        # Probes are never shed.
        assert (await api.get("/healthz")).status == 200
        assert (await api.get("/readyz")).status == 200
        # A client that goes away cancels its handler and so its call, and the worker stops
        # the call's handler (a cancel notice), long before the 10 s deadline.
        held.pop().cancel()
        await _pending(api, 2)
        async with asyncio.timeout(5):
            while hold.cancelled != 1:  # noqa: ASYNC110 - nothing signals it: polled, bounded
                await asyncio.sleep(0.01)
        hold.release.set()
        for task in held:
            assert_problem(await task, 404, "not-found", path)
        assert (await api.get(path)).status == 404  # admitted again once the others finished


async def test_breaker_opens_after_timeouts_and_probes(
    broker_url: str, media: Media, database: Database, aiohttp_client: AiohttpClient
) -> None:
    url = await database()
    store = await DramaStore.open(url)
    await store.seed(CATALOGUE)
    await store.close()
    hold = Hold()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(stand_in(broker_url, LIST, hold))
        stack.callback(hold.release.set)
        settings = Settings.from_env(
            {
                "AMQP_URL": broker_url,
                "DATABASE_URL": url,
                "RPC_TIMEOUT_MS": "100",
                "BREAKER_FAILURES": "3",
                "BREAKER_COOLDOWN_MS": "500",
            }
        )
        api = await Api.open(await aiohttp_client(create_app(settings)))
        path = f"/dramas/{DRAMA.id}"
        calls = api.app[handlers.CALLS]
        assert isinstance(calls, GuardedRpcClient)
        for _ in range(3):
            assert_problem(await api.get(path), 504, "upstream-timeout", path)
        assert calls.state(LIST) == "open"
        reply = await api.get(path)
        body = assert_problem(reply, 503, "upstream-unavailable", path)
        assert "circuit open" in body["detail"]
        assert reply.elapsed < 0.05
        metrics = await (await api.client.get("/metrics")).text()
        assert f'rpc_client_breaker_state{{method="{LIST}"}} 2.0' in metrics
        # After the cooldown one probe goes through; the worker answers now: closed again.
        hold.release.set()
        await asyncio.sleep(0.6)  # the cooldown itself is what is tested here
        assert_problem(await api.get(path), 404, "not-found", path)
        assert calls.state(LIST) == "closed"


async def test_guard_failures_are_typed() -> None:
    class Slow:
        async def call(self, method: str, *_a: object, **_k: object) -> object:
            raise RpcTimeout(method, 0.01)

        async def ping(self) -> None:
            return None

    guard = GuardedRpcClient(Slow(), failures=2, cooldown=60)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(RpcTimeout):
            await guard.call("m", {}, dict)
    with pytest.raises(RpcUnavailable, match="circuit open"):
        await guard.call("m", {}, dict)


async def test_not_ready_while_a_worker_queue_has_no_consumer(
    broker_url: str, media: Media, database: Database, aiohttp_client: AiohttpClient
) -> None:
    url = await database()
    await (await DramaStore.open(url)).close()
    app = create_app(Settings.from_env({"AMQP_URL": broker_url, "DATABASE_URL": url}))
    api = await Api.open(await aiohttp_client(app))
    # No queue at all yet, then a queue whose worker is gone.
    body = assert_problem(await api.get("/readyz"), 503, "upstream-unavailable", "/readyz")
    assert "no consumer on queue rpc.episode" in body["detail"]
    async with stream_service(broker_url, media), stand_in(broker_url, LIST, Hold()):
        assert (await api.get("/readyz")).status == 200
    body = assert_problem(await api.get("/readyz"), 503, "upstream-unavailable", "/readyz")
    assert "no consumer on queue rpc.episode" in body["detail"]
    assert (await api.get("/healthz")).status == 200
