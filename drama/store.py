"""drama-service's own data: the ``dramas`` table, read by id and paged by id.

SQLAlchemy Core over an ``AsyncEngine``: the queries are a handful of fixed statements, so an
ORM's identity map and unit of work would add latency and nothing else. The same code runs on
SQLite (aiosqlite, the embedded default) and PostgreSQL (asyncpg, compose and Kubernetes); the
schema uses only types both share, and is created on open so a fresh database just works.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from broker import ReadCache, SqlStore
from catalog import CatalogDrama

__all__ = ["Drama", "DramaStore", "dramas", "metadata"]

# Rows per INSERT statement: well under SQLite's 32766 bound parameters and PostgreSQL's 32767.
_CHUNK = 1000

metadata = sa.MetaData()

dramas = sa.Table(
    "dramas",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("synopsis", sa.Text, nullable=False),
    sa.Column("year", sa.SmallInteger, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    # A JSON array in a text column: portable, and the API only ever reads it whole.
    sa.Column("genres", sa.Text, nullable=False),
)

_SELECT = sa.select(
    dramas.c.id,
    dramas.c.title,
    dramas.c.synopsis,
    dramas.c.year,
    dramas.c.country,
    dramas.c.genres,
)


_genres_encoder = msgspec.json.Encoder()
_genres_decoder = msgspec.json.Decoder(list[str])


class Drama(msgspec.Struct, frozen=True):
    id: int
    title: str
    synopsis: str
    year: int
    country: str
    genres: list[str]


class DramaStore(SqlStore):
    """The dramas table behind one engine (and its connection pool)."""

    metadata = metadata
    # Dramas by id, seconds stale at most (CACHE_TTL_MS); off until the service sets it.
    cache: ReadCache[int, Drama] = ReadCache("dramas", 0)

    async def get(self, drama_id: int) -> Drama | None:
        cached = self.cache.get(drama_id)
        if cached is not None:
            return cached
        async with self._engine.connect() as conn:
            result = await conn.execute(_SELECT.where(dramas.c.id == drama_id))
            row = result.one_or_none()
        if row is None:
            return None
        drama = _drama(row)
        self.cache.put(drama_id, drama)
        return drama

    async def page(self, after_id: int | None, limit: int) -> list[Drama]:
        """Up to ``limit`` dramas with ids above ``after_id``, by id: keyset pagination."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        query = _SELECT.order_by(dramas.c.id).limit(limit)
        if after_id is not None:
            query = query.where(dramas.c.id > after_id)
        async with self._engine.connect() as conn:
            result = await conn.execute(query)
            return [_drama(row) for row in result]

    async def seed(self, catalog: Sequence[CatalogDrama], *, reset: bool = False) -> int:
        """Insert the catalogue's dramas that are not there yet; returns how many were inserted.

        Idempotent, and safe against a concurrent seed: ids already present are left as they
        are. ``reset`` empties the table first, in the same transaction.
        """
        async with self._engine.begin() as conn:
            if reset:
                await conn.execute(dramas.delete())
            inserted = 0
            for start in range(0, len(catalog), _CHUNK):
                rows = [_row(drama) for drama in catalog[start : start + _CHUNK]]
                inserted += await _insert_new(conn, rows)
            # Fresh statistics, or the planner keeps the estimates of the empty table it saw
            # at creation (PostgreSQL then scans the whole table for every page).
            await conn.execute(sa.text("ANALYZE dramas"))
        return inserted


def _drama(row: sa.Row[int, str, str, int, str, str]) -> Drama:
    drama_id, title, synopsis, year, country, genres = row
    return Drama(
        id=drama_id,
        title=title,
        synopsis=synopsis,
        year=year,
        country=country,
        genres=_genres_decoder.decode(genres),
    )


def _row(drama: CatalogDrama) -> dict[str, object]:
    return {
        "id": drama.id,
        "title": drama.title,
        "synopsis": drama.synopsis,
        "year": drama.year,
        "country": drama.country,
        "genres": _genres_encoder.encode(drama.genres).decode(),
    }


async def _insert_new(conn: AsyncConnection, rows: list[dict[str, object]]) -> int:
    # ON CONFLICT DO NOTHING ... RETURNING counts exactly the rows this call inserted, in one
    # statement per chunk, even if another seed runs at the same time. Both dialects spell it
    # the same way but SQLAlchemy keeps it in each dialect's own insert().
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(dramas).on_conflict_do_nothing(index_elements=[dramas.c.id])
    result = await conn.execute(statement.returning(dramas.c.id), rows)
    return len(result.all())
