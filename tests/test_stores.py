"""The sample catalogue and the two stores, on real SQLite files and a real PostgreSQL.

Every store test runs on both backends: SQLite in ``tmp_path``, PostgreSQL in a database created
for this module and dropped after it (tables are dropped after each test).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from catalog import CatalogDrama, sample
from drama import store as drama_store_module
from drama.store import Drama, DramaStore
from episode import store as episode_store_module
from episode.contract import DramaEpisodes, Episode
from episode.store import EpisodeStore

PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

COUNTRIES = {"KR", "CN", "JP", "TW", "TH"}


# --- fixtures ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg_url() -> AsyncIterator[str]:
    name = f"test_stores_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction; NullPool leaves no idle connection
    # to the admin database behind.
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        async with admin.connect() as conn:
            # FORCE: a store a failed test did not close must not keep the database alive.
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A directory that does not exist yet: open() must create it.
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'store.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def dramas(database_url: str) -> AsyncIterator[DramaStore]:
    store = await DramaStore.open(database_url)
    try:
        yield store
    finally:
        async with store.engine.begin() as conn:
            await conn.run_sync(drama_store_module.metadata.drop_all)
        await store.close()


@pytest.fixture
async def episodes(database_url: str) -> AsyncIterator[EpisodeStore]:
    store = await EpisodeStore.open(database_url)
    try:
        yield store
    finally:
        async with store.engine.begin() as conn:
            await conn.run_sync(episode_store_module.metadata.drop_all)
        await store.close()


# --- helpers ----------------------------------------------------------------------------------


def as_drama(drama: CatalogDrama) -> Drama:
    return Drama(
        id=drama.id,
        title=drama.title,
        synopsis=drama.synopsis,
        year=drama.year,
        country=drama.country,
        genres=list(drama.genres),
    )


def as_episodes(drama: CatalogDrama, cap: int | None = None) -> DramaEpisodes:
    listed = [
        Episode(number=e.number, title=e.title, duration_s=e.duration_s, media_key=e.media_key)
        for e in drama.episodes
    ]
    return DramaEpisodes(drama_id=drama.id, total=len(listed), episodes=listed[:cap])


async def walk(store: DramaStore, limit: int) -> list[int]:
    ids: list[int] = []
    after: int | None = None
    while page := await store.page(after, limit):
        assert len(page) <= limit
        ids.extend(drama.id for drama in page)
        after = page[-1].id
    return ids


def count_statements(store: DramaStore | EpisodeStore) -> list[str]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    return statements


# --- catalog ----------------------------------------------------------------------------------


def test_sample_is_deterministic_and_prefix_stable() -> None:
    assert sample() == sample()
    assert sample() == sample(20)
    assert sample(5) == sample()[:5]
    assert sample(300)[:20] == sample()
    assert sample(300)[:150] == sample(150)
    assert sample(0) == []


def test_sample_rejects_negative_count() -> None:
    with pytest.raises(ValueError, match="count"):
        sample(-1)


def test_sample_hand_written_catalogue_is_plausible() -> None:
    catalog = sample()
    assert [drama.id for drama in catalog] == list(range(1, 21))
    assert len({drama.title for drama in catalog}) == 20
    assert {drama.country for drama in catalog} == COUNTRIES
    for drama in catalog:
        assert 2015 <= drama.year <= 2025
        assert drama.synopsis.endswith(".")
        assert drama.genres
        assert 10 <= len(drama.episodes) <= 60
        assert [e.number for e in drama.episodes] == list(range(1, len(drama.episodes) + 1))
        for episode in drama.episodes:
            assert 40 * 60 <= episode.duration_s <= 75 * 60
            assert episode.media_key == f"dramas/{drama.id}/ep{episode.number:03d}/index.m3u8"


def test_sample_generates_10000_dramas_fast() -> None:
    started = time.perf_counter()
    catalog = sample(10_000)
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert [drama.id for drama in catalog] == list(range(1, 10_001))
    assert catalog[:20] == sample()
    generated = catalog[20:]
    assert len({drama.title for drama in generated}) > 1000
    assert {drama.country for drama in generated} == COUNTRIES
    assert all(2015 <= drama.year <= 2025 for drama in generated)
    assert catalog[9_999].episodes[-1].media_key.startswith("dramas/10000/ep")
    assert all(40 * 60 <= e.duration_s <= 75 * 60 for drama in generated for e in drama.episodes)


# --- DramaStore -------------------------------------------------------------------------------


async def test_open_creates_schema_once_and_pings(dramas: DramaStore, database_url: str) -> None:
    await dramas.ping()
    assert await dramas.seed(sample(3)) == 3

    again = await DramaStore.open(database_url)
    try:
        await again.ping()
        assert await again.get(3) == as_drama(sample(3)[2])
    finally:
        await again.close()


async def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "drama.db"
    store = await DramaStore.open(f"sqlite+aiosqlite:///{path}")
    try:
        async with store.engine.connect() as conn:
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
    finally:
        await store.close()
    assert path.is_file()
    assert mode == "wal"


async def test_open_fails_when_the_database_is_unreachable() -> None:
    with pytest.raises(OSError, match="Connect call failed"):
        await DramaStore.open("postgresql+asyncpg://postgres@127.0.0.1:1/none")


async def test_get(dramas: DramaStore) -> None:
    catalog = sample()
    await dramas.seed(catalog)

    for drama in catalog:
        assert await dramas.get(drama.id) == as_drama(drama)
    assert await dramas.get(0) is None
    assert await dramas.get(21) is None


async def test_page_walks_every_id_exactly_once(dramas: DramaStore) -> None:
    await dramas.seed(sample(250))

    assert await walk(dramas, 7) == list(range(1, 251))
    assert await walk(dramas, 250) == list(range(1, 251))
    first = await dramas.page(None, 3)
    assert first == [as_drama(drama) for drama in sample(3)]
    assert [d.id for d in await dramas.page(248, 100)] == [249, 250]
    assert await dramas.page(250, 100) == []


async def test_page_rejects_an_empty_limit(dramas: DramaStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await dramas.page(None, 0)


async def test_drama_seed_is_idempotent_and_reset_replaces(dramas: DramaStore) -> None:
    assert await dramas.seed(sample()) == 20
    assert await dramas.seed(sample()) == 0
    assert await dramas.seed(sample(30)) == 10
    assert await walk(dramas, 100) == list(range(1, 31))

    assert await dramas.seed(sample(5), reset=True) == 5
    assert await walk(dramas, 100) == [1, 2, 3, 4, 5]
    assert await dramas.seed([]) == 0


# --- EpisodeStore -----------------------------------------------------------------------------


async def test_list_for_keeps_order_caps_and_echoes_duplicates(episodes: EpisodeStore) -> None:
    catalog = sample()
    await episodes.seed(catalog)
    by_id = {drama.id: drama for drama in catalog}
    asked = [7, 3, 999, 7, 1]

    statements = count_statements(episodes)
    everything = await episodes.list_for(asked, None)
    assert len(statements) == 1  # one query for the whole batch, not one per drama
    unknown = DramaEpisodes(drama_id=999, total=0, episodes=[])
    assert everything == [
        as_episodes(by_id[7]),
        as_episodes(by_id[3]),
        unknown,
        as_episodes(by_id[7]),
        as_episodes(by_id[1]),
    ]

    capped = await episodes.list_for(asked, 2)
    assert capped == [
        as_episodes(by_id[7], 2),
        as_episodes(by_id[3], 2),
        unknown,
        as_episodes(by_id[7], 2),
        as_episodes(by_id[1], 2),
    ]
    # A cap above the episode count returns them all.
    assert await episodes.list_for([5], 1000) == [as_episodes(by_id[5])]


async def test_list_for_counts_only_with_a_zero_cap(episodes: EpisodeStore) -> None:
    catalog = sample()
    await episodes.seed(catalog)

    answer = await episodes.list_for([2, 4, 404], 0)
    assert [(a.drama_id, a.total, a.episodes) for a in answer] == [
        (2, len(catalog[1].episodes), []),
        (4, len(catalog[3].episodes), []),
        (404, 0, []),
    ]


async def test_list_for_edge_cases(episodes: EpisodeStore) -> None:
    assert await episodes.list_for([], None) == []
    assert await episodes.list_for([1, 2], 3) == [
        DramaEpisodes(drama_id=1, total=0, episodes=[]),
        DramaEpisodes(drama_id=2, total=0, episodes=[]),
    ]
    with pytest.raises(ValueError, match="per_drama"):
        await episodes.list_for([1], -1)


async def test_episode_seed_is_idempotent_and_reset_replaces(episodes: EpisodeStore) -> None:
    catalog = sample()
    total = sum(len(drama.episodes) for drama in catalog)

    assert await episodes.seed(catalog) == total
    assert await episodes.seed(catalog) == 0
    assert await episodes.seed(sample(21)) == len(sample(21)[20].episodes)

    assert await episodes.seed(catalog[:2], reset=True) == sum(len(d.episodes) for d in catalog[:2])
    answer = await episodes.list_for([1, 2, 3], None)
    assert [a.total for a in answer] == [len(catalog[0].episodes), len(catalog[1].episodes), 0]


# --- the load-test catalogue ------------------------------------------------------------------


async def test_seed_10000_dramas(dramas: DramaStore, episodes: EpisodeStore) -> None:
    catalog = sample(10_000)
    episode_count = sum(len(drama.episodes) for drama in catalog)

    assert await dramas.seed(catalog) == 10_000
    assert await episodes.seed(catalog) == episode_count
    assert await dramas.seed(catalog) == 0

    assert await walk(dramas, 100) == list(range(1, 10_001))
    last_page = await dramas.page(9_900, 100)
    assert last_page == [as_drama(drama) for drama in catalog[9_900:]]
    answer = await episodes.list_for([drama.id for drama in last_page], 3)
    assert answer == [as_episodes(drama, 3) for drama in catalog[9_900:]]
