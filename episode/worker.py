"""episode-service: serves ``episode.list`` from its own database."""

from __future__ import annotations

from broker import BadRequest, RpcWorker

from .contract import LIST, MAX_DRAMAS, QUEUE, EpisodeList, ListEpisodes
from .settings import Settings
from .store import EpisodeStore


class Procedures:
    def __init__(self, store: EpisodeStore) -> None:
        self._store = store

    async def list_episodes(self, request: ListEpisodes) -> EpisodeList:
        if not 1 <= len(request.drama_ids) <= MAX_DRAMAS:
            raise BadRequest(f"drama_ids must hold 1 to {MAX_DRAMAS} ids")
        if request.per_drama is not None and request.per_drama < 1:
            raise BadRequest("per_drama must be at least 1")
        dramas = await self._store.list_for(request.drama_ids, request.per_drama)
        return EpisodeList(dramas=dramas)


def build_worker(settings: Settings, store: EpisodeStore) -> RpcWorker:
    worker = RpcWorker(
        settings.amqp_url,
        QUEUE,
        prefetch=settings.prefetch,
        queue_type=settings.queue_type,
        faults=settings.faults_enabled,
    )
    worker.register(LIST, ListEpisodes, Procedures(store).list_episodes)
    return worker
