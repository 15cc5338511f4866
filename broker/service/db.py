"""The database engine every service opens the same way: SQLite or PostgreSQL, async.

One place for the pool settings and SQLite's pragmas, and for the instrumentation that hooks
the engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Self

import sqlalchemy as sa
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from broker.rpc.faults import db_delay
from broker.telemetry.tracing import instrument_engine


async def open_engine(
    url: str,
    metadata: sa.MetaData,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    tracer_provider: trace.TracerProvider | None = None,
) -> AsyncEngine:
    """An engine for ``url`` with the tables of ``metadata`` created if they are missing.

    Every statement it runs is a database CLIENT span (of the global tracer provider unless
    ``tracer_provider`` is given; no-op while tracing is off).
    """
    engine = _create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all, checkfirst=True)
    except BaseException:
        await engine.dispose()
        raise
    # After the schema check: start-up statements are not requests worth a trace.
    instrument_engine(engine, tracer_provider)
    # Registered after the instrumentation's hook: an injected delay falls inside the
    # statement's span, where a slow database would put it.
    sa.event.listen(engine.sync_engine, "before_cursor_execute", _injected_db_delay)
    return engine


def _injected_db_delay(*_args: object) -> None:
    """A slow-database fault (broker.rpc.faults): runs in SQLAlchemy's greenlet, so it may await."""
    delay = db_delay()
    if delay > 0:
        await_only(asyncio.sleep(delay))


class SqlStore:
    """A service's tables behind one engine and its connection pool.

    Subclasses set ``metadata`` (their tables) and add their queries.
    """

    metadata: ClassVar[sa.MetaData]

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> Self:
        """Connect to ``url``, creating the schema if it is missing."""
        engine = await open_engine(
            url, cls.metadata, pool_size=pool_size, max_overflow=max_overflow
        )
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        """The engine (its ``sync_engine`` is what instrumentation hooks), for tests too."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        """Round-trip to the database; raises if it cannot be reached."""
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


def _create_engine(url: str, *, pool_size: int, max_overflow: int) -> AsyncEngine:
    parsed = sa.make_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            options = {"pool_size": pool_size, "max_overflow": max_overflow}
        # An in-memory database lives in one connection, so SQLAlchemy pins it (StaticPool)
        # and pool sizes do not apply.
    else:
        # No pre-ping: it would add a round trip to every checkout, inside the latency this
        # project measures. Recycling bounds a connection's age instead; a connection broken
        # by a database restart fails one query and is then discarded by the pool.
        options = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": 5,
            "pool_recycle": 1800,
        }
    engine = create_async_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL lets readers run while the seed writes; NORMAL is durable enough under WAL, and the
    # busy timeout makes a second writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()
