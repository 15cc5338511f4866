"""drama-service's API in the unit tier: the app in process, its workers' routers behind the
in-memory transport (broker.rpc.InMemoryRpcClient), SQLite files: no broker, no PostgreSQL, no
process. Paging, the drama with its signed streams, problem+json for every client error and
for a worker that is missing or failing; every reply checked against the served OpenAPI
document (tests.test_api.Api). The same behaviours over RabbitMQ are tests/test_api.py's."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pytest_aiohttp import AiohttpClient

from broker.errors import NotFound, RpcUnroutable
from broker.rpc import InMemoryRpcClient, Router
from drama.app import create_app
from drama.settings import Settings
from drama.store import DramaStore
from episode.contract import LIST, ListEpisodes
from episode.settings import Settings as EpisodeSettings
from episode.store import EpisodeStore
from episode.worker import build_worker as build_episode_worker
from stream.contract import PRESIGN
from stream.settings import Settings as StreamSettings
from stream.worker import build_worker as build_stream_worker
from stream.worker import open_s3
from tests.test_api import CATALOGUE, DRAMA, Api, assert_problem

T = TypeVar("T")
BUCKET = "drama-media"


class Workers:
    """One RpcClient over several routers, by method: what the broker does by routing key."""

    def __init__(self, *routers: Router) -> None:
        self.clients = {
            method: InMemoryRpcClient(router) for router in routers for method in router.methods
        }

    async def call(
        self, method: str, request: Any, result_type: type[T], *, timeout: float | None = None
    ) -> T:
        client = self.clients.get(method)
        if client is None:
            raise RpcUnroutable(method, "no worker queue is bound to this method")
        return await client.call(method, request, result_type, timeout=timeout)

    async def ping(self) -> None:
        return None


def sqlite(tmp_path: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / name}.db"


@pytest.fixture
async def routers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Router, Router]]:
    """episode-service's and stream-service's routers, as their processes build them."""
    # Signing is local computation: credentials of the test's own, no AWS setup, no S3 call.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unit-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    episodes = await EpisodeStore.open(sqlite(tmp_path, "episode"))
    await episodes.seed(CATALOGUE)
    episode = build_episode_worker(EpisodeSettings.from_env({"CACHE_TTL_MS": "0"}), episodes).router
    settings = StreamSettings.from_env(
        {"MEDIA_BUCKET": BUCKET, "S3_ENDPOINT_URL": "http://127.0.0.1:9"}  # never contacted
    )
    async with open_s3(settings) as s3:
        yield episode, build_stream_worker(settings, s3).router
    await episodes.close()


async def start(aiohttp_client: AiohttpClient, tmp_path: Path, workers: Workers, **env: str) -> Api:
    store = await DramaStore.open(sqlite(tmp_path, "drama"))
    await store.seed(CATALOGUE)
    await store.close()
    settings = Settings.from_env(
        {"DATABASE_URL": sqlite(tmp_path, "drama"), "CACHE_TTL_MS": "0", **env}
    )
    return await Api.open(await aiohttp_client(create_app(settings, rpc_transport=workers)))


async def test_pages_walk_the_catalogue_once_in_order(
    routers: tuple[Router, Router], aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start(aiohttp_client, tmp_path, Workers(*routers))
    seen: list[int] = []
    cursor = ""  # an empty cursor is the first page, as the document allows
    while True:
        reply = await api.get("/dramas", limit="7", cursor=cursor)
        assert reply.status == 200
        assert len(reply.body["items"]) <= 7
        seen += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
        assert len(seen) <= len(CATALOGUE), "next_cursor never ends"
    assert seen == [drama.id for drama in CATALOGUE]


async def test_a_drama_comes_with_its_episodes_and_signed_streams(
    routers: tuple[Router, Router], aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start(aiohttp_client, tmp_path, Workers(*routers))
    reply = await api.get(f"/dramas/{DRAMA.id}")
    assert reply.status == 200
    assert reply.body["title"] == DRAMA.title
    assert [e["number"] for e in reply.body["episodes"]] == [e.number for e in DRAMA.episodes]
    for episode, expected in zip(reply.body["episodes"], DRAMA.episodes, strict=True):
        url = urllib.parse.urlsplit(episode["stream"]["url"])
        assert url.path == f"/{BUCKET}/{expected.media_key}"
        query = urllib.parse.parse_qs(url.query)
        assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert query["X-Amz-Signature"][0]
    assert reply.headers["Cache-Control"] == "no-store"  # it carries signed URLs


async def test_client_errors_are_problems(
    routers: tuple[Router, Router], aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    api = await start(aiohttp_client, tmp_path, Workers(*routers))
    assert_problem(await api.get("/dramas/999999"), 404, "not-found", "/dramas/999999")
    assert_problem(await api.get("/dramas/abc"), 400, "invalid-parameter", "/dramas/abc")
    assert_problem(await api.get("/dramas", limit="0"), 400, "invalid-parameter", "/dramas")
    bad_cursor = base64.urlsafe_b64encode(b"v9:1").decode().rstrip("=")
    assert_problem(await api.get("/dramas", cursor=bad_cursor), 400, "invalid-parameter", "/dramas")


async def test_a_missing_or_failing_worker_is_a_problem_not_a_500(
    routers: tuple[Router, Router], aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    episode, stream = routers
    path = f"/dramas/{DRAMA.id}"
    # No stream worker at all: the broker would return the request, 503 at once.
    api = await start(aiohttp_client, tmp_path, Workers(episode))
    body = assert_problem(await api.get(path), 503, "upstream-unavailable", path)
    assert PRESIGN in body["detail"]

    async def lost(_request: ListEpisodes) -> None:
        raise NotFound("the worker has no such thing")

    # A worker whose answer says the drama is gone: the API says 404, not 500.
    failing = Router("rpc.episode")
    failing.register(LIST, ListEpisodes, lost)
    api = await start(aiohttp_client, tmp_path / "second", Workers(failing, stream))
    assert_problem(await api.get(path), 404, "not-found", path)
