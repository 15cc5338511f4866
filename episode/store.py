"""episode-service's own data: the ``episodes`` table, read a page of dramas at a time.

``episode.list`` asks for the episodes of a whole page of dramas at once, so :meth:`list_for`
answers any number of dramas with one query: a window function counts each drama's episodes and
numbers them, and the cap applies to that numbering, so totals stay exact while the rows
returned stay few. SQLAlchemy Core over an ``AsyncEngine``, portable between SQLite (aiosqlite)
and PostgreSQL (asyncpg); the schema is created on open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from broker import SqlStore
from catalog import CatalogDrama
from episode.contract import DramaEpisodes, Episode

__all__ = ["EpisodeStore", "episodes", "metadata"]

# Rows per INSERT statement: 5 columns x 2000 rows stays under SQLite's 32766 bound parameters
# and PostgreSQL's 32767.
_CHUNK = 2000

metadata = sa.MetaData()

episodes = sa.Table(
    "episodes",
    metadata,
    # The primary key's index, (drama_id, number), serves both the IN lookup and the ordering.
    sa.Column("drama_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("duration_s", sa.Integer, nullable=False),
    sa.Column("media_key", sa.String(500), nullable=False),
)


class EpisodeStore(SqlStore):
    """The episodes table behind one engine (and its connection pool)."""

    metadata = metadata

    async def list_for(
        self, drama_ids: Sequence[int], per_drama: int | None
    ) -> list[DramaEpisodes]:
        """Each drama's episode count and episodes by number, in the order of ``drama_ids``.

        ``per_drama`` caps the episodes returned per drama (0 returns counts only); ``total``
        always counts them all. Repeated ids are answered repeatedly; unknown ids get total 0.
        """
        if per_drama is not None and per_drama < 0:
            raise ValueError(f"per_drama must be >= 0, got {per_drama}")
        if not drama_ids:
            return []
        async with self._engine.connect() as conn:
            result = await conn.execute(_list_query(sorted(set(drama_ids)), per_drama))
            # Fetch, then build the reply after the connection is back in the pool.
            rows = result.all()
        found: dict[int, tuple[int, list[Episode]]] = {}
        for row in rows:
            listed = found.setdefault(row.drama_id, (row.total, []))[1]
            # With a cap of 0 the query still returns each drama's first row, for its total.
            if per_drama is None or len(listed) < per_drama:
                listed.append(
                    Episode(
                        number=row.number,
                        title=row.title,
                        duration_s=row.duration_s,
                        media_key=row.media_key,
                    )
                )
        answers = {
            drama_id: DramaEpisodes(drama_id=drama_id, total=total, episodes=listed)
            for drama_id, (total, listed) in found.items()
        }
        return [
            answers.get(drama_id) or DramaEpisodes(drama_id=drama_id, total=0, episodes=[])
            for drama_id in drama_ids
        ]

    async def seed(self, catalog: Sequence[CatalogDrama], *, reset: bool = False) -> int:
        """Insert the catalogue's episodes that are not there yet; returns how many were inserted.

        Idempotent, and safe against a concurrent seed: (drama, number) pairs already present
        are left as they are. ``reset`` empties the table first, in the same transaction.
        """
        async with self._engine.begin() as conn:
            if reset:
                await conn.execute(episodes.delete())
            inserted = 0
            rows: list[dict[str, object]] = []
            for drama in catalog:
                rows.extend(
                    {
                        "drama_id": drama.id,
                        "number": episode.number,
                        "title": episode.title,
                        "duration_s": episode.duration_s,
                        "media_key": episode.media_key,
                    }
                    for episode in drama.episodes
                )
                if len(rows) >= _CHUNK:
                    inserted += await _insert_new(conn, rows)
                    rows = []
            if rows:
                inserted += await _insert_new(conn, rows)
            # Fresh statistics, or the planner keeps the estimates of the empty table it saw
            # at creation (PostgreSQL then scans the whole table for every page).
            await conn.execute(sa.text("ANALYZE episodes"))
        return inserted


def _list_query(drama_ids: list[int], per_drama: int | None) -> sa.Select[Any]:
    ranked = (
        sa.select(
            episodes.c.drama_id,
            episodes.c.number,
            episodes.c.title,
            episodes.c.duration_s,
            episodes.c.media_key,
            sa.func.count().over(partition_by=episodes.c.drama_id).label("total"),
            sa.func.row_number()
            .over(partition_by=episodes.c.drama_id, order_by=episodes.c.number)
            .label("position"),
        )
        .where(episodes.c.drama_id.in_(drama_ids))
        .subquery("ranked")
    )
    query = sa.select(ranked).order_by(ranked.c.drama_id, ranked.c.number)
    if per_drama is not None:
        # Keep at least the first row of every drama: it carries the total.
        query = query.where(ranked.c.position <= max(per_drama, 1))
    return query


async def _insert_new(conn: AsyncConnection, rows: list[dict[str, object]]) -> int:
    # ON CONFLICT DO NOTHING ... RETURNING counts exactly the rows this call inserted, in one
    # statement per chunk, even if another seed runs at the same time. Both dialects spell it
    # the same way but SQLAlchemy keeps it in each dialect's own insert().
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(episodes).on_conflict_do_nothing(
        index_elements=[episodes.c.drama_id, episodes.c.number]
    )
    result = await conn.execute(statement.returning(episodes.c.drama_id), rows)
    return len(result.all())
