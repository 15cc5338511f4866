"""episode-service: serves ``episode.list`` from its own database."""

from __future__ import annotations

from broker import BadRequest, ReadCache, RpcWorker

from .contract import LIST, MAX_DRAMAS, QUEUE, DramaEpisodes, EpisodeList, ListEpisodes
from .settings import Settings
from .store import EpisodeStore


class Procedures:
    def __init__(self, store: EpisodeStore, cache_ttl_s: float = 0) -> None:
        self._store = store
        # Each drama's listing for a given cap, seconds stale at most (CACHE_TTL_MS).
        self._cache: ReadCache[tuple[int, int | None], DramaEpisodes] = ReadCache(
            "episodes", cache_ttl_s
        )

    async def list_episodes(self, request: ListEpisodes) -> EpisodeList:
        if not 1 <= len(request.drama_ids) <= MAX_DRAMAS:
            raise BadRequest(f"drama_ids must hold 1 to {MAX_DRAMAS} ids")
        if request.per_drama is not None and request.per_drama < 1:
            raise BadRequest("per_drama must be at least 1")
        per_drama = request.per_drama
        found: dict[int, DramaEpisodes] = {}
        missing: list[int] = []
        for drama_id in dict.fromkeys(request.drama_ids):
            cached = self._cache.get((drama_id, per_drama))
            if cached is None:
                missing.append(drama_id)
            else:
                found[drama_id] = cached
        if missing:
            for listing in await self._store.list_for(missing, per_drama):
                found[listing.drama_id] = listing
                self._cache.put((listing.drama_id, per_drama), listing)
        return EpisodeList(dramas=[found[i] for i in request.drama_ids])


def build_worker(settings: Settings, store: EpisodeStore) -> RpcWorker:
    worker = settings.worker.rpc_worker(QUEUE, "episode-service")
    procedures = Procedures(store, settings.cache_ttl_ms / 1000)
    worker.register(LIST, ListEpisodes, procedures.list_episodes)
    return worker
