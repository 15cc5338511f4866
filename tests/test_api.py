"""drama-service through its real entry point, against the real broker and the real workers.

``aiohttp_client(create_app(settings))`` serves the HTTP API in-process; the episode and stream
workers run in the same event loop on their real queues, each test on a RabbitMQ virtual host of
its own (the services keep their default names: ``rpc``, ``rpc.episode``, ``rpc.stream``).
Databases are SQLite files seeded from the sample catalogue, and pre-signed stream URLs are
fetched from an embedded S3 endpoint, as a player would fetch them.

Every response any test receives is checked against the OpenAPI document the service serves:
its status must be documented for the route, and its body must validate against the schema
documented for that status and content type (see :class:`Api`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import quote, urlsplit

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from multidict import CIMultiDictProxy
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator import validate as validate_openapi
from pytest_aiohttp import AiohttpClient
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from yarl import URL

import catalog
from broker.rpc import AmqpRpcClient, BadRequest, NotFound, RpcWorker
from drama import handlers
from drama.app import create_app
from drama.settings import Settings
from drama.store import DramaStore
from episode.contract import LIST, ListEpisodes
from episode.contract import QUEUE as EPISODE_QUEUE
from episode.settings import Settings as EpisodeSettings
from episode.store import EpisodeStore
from episode.worker import build_worker as build_episode_worker
from loadtest.devstack.local_s3 import LocalS3
from stream.contract import PRESIGN, Presign
from stream.contract import QUEUE as STREAM_QUEUE
from stream.settings import Settings as StreamSettings
from stream.store import seed_media
from stream.worker import build_worker as build_stream_worker
from stream.worker import open_s3

# More than two default pages, and a multiple of 7: the last page of a walk with limit=7 is full,
# the edge where only the extra row fetched tells whether another page follows.
CATALOGUE = catalog.sample(42)
DRAMA = CATALOGUE[0]
PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://drama-streaming.dev/problems/"
ACCESS_KEY_ID = "local-s3"
SECRET_ACCESS_KEY = "local-s3-secret"  # noqa: S105 - the embedded endpoint's local-only key
PRESIGN_TTL_S = 600
MAX_ID = 2**63 - 1
DOCUMENT_URI = "urn:drama-streaming:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# What a crashing handler says about itself: it must never reach an HTTP client.
INTERNAL_DETAIL = "credentials=hunter2 in handler state"


# -- the API, checked against its own OpenAPI document --------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: CIMultiDictProxy[str]
    body: Any
    elapsed: float
    # Wall clock when the request was sent and when the reply was read.
    sent: dt.datetime
    received: dt.datetime


def _pointer(*segments: str) -> str:
    """A URI fragment holding the JSON pointer to ``segments`` (RFC 6901, then percent-encoded)."""
    escaped = (segment.replace("~", "~0").replace("/", "~1") for segment in segments)
    return "#" + quote("/" + "/".join(escaped))


def _matches(template: str, path: str) -> bool:
    """Whether ``path`` is an instance of the OpenAPI path ``template`` (``{name}`` segments)."""
    wanted, actual = template.split("/"), path.split("/")
    return len(wanted) == len(actual) and all(
        w == a or (w.startswith("{") and w.endswith("}") and a != "")
        for w, a in zip(wanted, actual, strict=True)
    )


class Api:
    """The service's test client; every reply is validated against the served OpenAPI document.

    A reply must have a status that the document lists for its operation and a body valid
    (JSON Schema 2020-12, ``$ref``s resolved inside the document) against the schema listed for
    that status and content type. Only aiohttp's own 404 (no route) and 405 (no such method)
    answer operations that the document cannot list; they must still be problem details.
    """

    def __init__(self, client: TestClient[web.Request, web.Application], document: Any) -> None:
        self.client = client
        self.document: dict[str, Any] = document
        self._registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, DRAFT202012.create_resource(document)
        )

    @classmethod
    async def open(cls, client: TestClient[web.Request, web.Application]) -> Api:
        async with client.get("/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            document = await response.json()
        return cls(client, document)

    @property
    def app(self) -> web.Application:
        app = self.client.app
        assert app is not None
        return app

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, **params)

    async def request(self, method: str, path: str, **params: str) -> Reply:
        sent, started = dt.datetime.now(dt.UTC), time.monotonic()
        async with self.client.request(method, path, params=params) as response:
            raw = await response.read()
        reply = Reply(
            status=response.status,
            content_type=response.content_type,
            headers=response.headers,
            body=json.loads(raw),
            elapsed=time.monotonic() - started,
            sent=sent,
            received=dt.datetime.now(dt.UTC),
        )
        self.check(method, path, reply)
        return reply

    def check(self, method: str, path: str, reply: Reply) -> None:
        """Assert that ``reply`` is what the document says ``method path`` may answer."""
        operation = None
        template = next((t for t in self.document["paths"] if _matches(t, path)), None)
        if template is not None:
            operation = self.document["paths"][template].get(method.lower())
        if operation is None or template is None:
            assert reply.status in (404, 405), f"{method} {path}: undocumented, {reply.status}"
            assert reply.content_type == PROBLEM_JSON
            pointer = _pointer("components", "schemas", "Problem")
        else:
            responses = operation["responses"]
            status = str(reply.status)
            assert status in responses, f"{method} {template} does not document {status}"
            content = responses[status].get("content", {})
            assert reply.content_type in content, (
                f"{method} {template} {status} does not document {reply.content_type}"
            )
            operation_path = ("paths", template, method.lower(), "responses", status)
            pointer = _pointer(*operation_path, "content", reply.content_type, "schema")
        self.validator(pointer).validate(reply.body)

    def validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": DOCUMENT_URI + pointer}, registry=self._registry)


def assert_problem(reply: Reply, status: int, slug: str, instance: str) -> dict[str, Any]:
    """``reply`` is an RFC 9457 problem with all five members; returns its body."""
    assert reply.status == status, reply.body
    assert reply.content_type == PROBLEM_JSON
    body: dict[str, Any] = reply.body
    assert body["type"] == PROBLEM_BASE + slug
    assert isinstance(body["title"], str)
    assert body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["instance"] == instance
    if status == 503:
        assert reply.headers["Retry-After"].isdigit()
    return body


# -- fixtures: broker, databases, S3, workers, the app ----------------------------------------


@pytest.fixture
def broker_url(amqp_url: str, vhost: str) -> str:
    """The AMQP URL of this test's own virtual host."""
    return str(URL(amqp_url).with_path(f"/{vhost}"))


@pytest.fixture
async def drama_db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'drama.db'}"
    store = await DramaStore.open(url)
    try:
        assert await store.seed(CATALOGUE) == len(CATALOGUE)
    finally:
        await store.close()
    return url


@pytest.fixture
async def episode_store(tmp_path: Path) -> AsyncIterator[EpisodeStore]:
    store = await EpisodeStore.open(f"sqlite+aiosqlite:///{tmp_path / 'episode.db'}")
    try:
        await store.seed(CATALOGUE)
        yield store
    finally:
        await store.close()


@dataclass(frozen=True)
class Media:
    endpoint: str
    bucket: str


@pytest.fixture
def media(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Media]:
    """An embedded S3 endpoint, found by aioboto3's default chain as on a real deployment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Nothing from the machine's own AWS setup may take part.
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    with LocalS3(credentials={ACCESS_KEY_ID: SECRET_ACCESS_KEY}) as s3:
        # moto's objects are global to the process: a bucket of its own keeps each test apart.
        yield Media(endpoint=s3.url, bucket=f"media-{uuid.uuid4().hex[:12]}")


def stream_settings(broker_url: str, media: Media) -> StreamSettings:
    return StreamSettings.from_env(
        {
            "AMQP_URL": broker_url,
            "MEDIA_BUCKET": media.bucket,
            "S3_ENDPOINT_URL": media.endpoint,
            "PRESIGN_TTL_S": str(PRESIGN_TTL_S),
        }
    )


@asynccontextmanager
async def episode_service(broker_url: str, store: EpisodeStore) -> AsyncIterator[RpcWorker]:
    settings = EpisodeSettings.from_env({"AMQP_URL": broker_url})
    async with build_episode_worker(settings, store) as worker:
        yield worker


@asynccontextmanager
async def stream_service(broker_url: str, media: Media) -> AsyncIterator[RpcWorker]:
    settings = stream_settings(broker_url, media)
    async with open_s3(settings) as s3, build_stream_worker(settings, s3) as worker:
        yield worker


@pytest.fixture
async def episode_worker(broker_url: str, episode_store: EpisodeStore) -> AsyncIterator[RpcWorker]:
    async with episode_service(broker_url, episode_store) as worker:
        yield worker


@pytest.fixture
async def stream_worker(broker_url: str, media: Media) -> AsyncIterator[RpcWorker]:
    async with stream_service(broker_url, media) as worker:
        yield worker


class StartApi(Protocol):
    def __call__(self, *, rpc_timeout_ms: int = ...) -> Awaitable[Api]: ...


@pytest.fixture
def start_api(aiohttp_client: AiohttpClient, broker_url: str, drama_db: str) -> StartApi:
    """Starts drama-service (its cleanup context connects to the broker and the database)."""

    async def start(*, rpc_timeout_ms: int = 3000) -> Api:
        settings = Settings.from_env(
            {
                "AMQP_URL": broker_url,
                "DATABASE_URL": drama_db,
                "RPC_TIMEOUT_MS": str(rpc_timeout_ms),
            }
        )
        return await Api.open(await aiohttp_client(create_app(settings)))

    return start


# -- stand-in workers for the failure modes ---------------------------------------------------

_QUEUES = {LIST: EPISODE_QUEUE, PRESIGN: STREAM_QUEUE}
_REQUESTS: dict[str, type[Any]] = {LIST: ListEpisodes, PRESIGN: Presign}


class Hold:
    """A handler that does not answer until the test releases it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0  # calls stopped because their callers gave up

    async def __call__(self, _request: object) -> NoReturn:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise NotFound("released by the test")


async def crash(_request: object) -> NoReturn:
    raise RuntimeError(INTERNAL_DETAIL)


async def missing(_request: object) -> NoReturn:
    raise NotFound("the worker has no such thing")


async def refuse(_request: object) -> NoReturn:
    raise BadRequest("the worker refuses this request")


@asynccontextmanager
async def stand_in(
    broker_url: str, method: str, handler: Callable[[Any], Awaitable[Any]]
) -> AsyncIterator[RpcWorker]:
    """A worker on the real queue of ``method``'s service, serving it with ``handler``."""
    worker = RpcWorker(broker_url, _QUEUES[method], grace=2)
    worker.register(method, _REQUESTS[method], handler)
    async with worker:
        yield worker


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    assert process.returncode == 0, err.decode()


# -- the happy paths --------------------------------------------------------------------------


def assert_stream(stream: Any, media: Media, key: str, reply: Reply) -> None:
    """A pre-signed GET of ``key`` in the media bucket, signed while ``reply`` was made."""
    url = urlsplit(stream["url"])
    assert f"{url.scheme}://{url.netloc}" == media.endpoint
    assert url.path == f"/{media.bucket}/{key}"
    assert "X-Amz-Signature=" in url.query
    expires_at = dt.datetime.fromisoformat(stream["expires_at"])
    assert expires_at.utcoffset() == dt.timedelta(0)
    # Valid for PRESIGN_TTL_S from signing; the time is given to the second, rounded down.
    ttl = dt.timedelta(seconds=PRESIGN_TTL_S)
    assert reply.sent.replace(microsecond=0) + ttl <= expires_at <= reply.received + ttl
    assert expires_at > dt.datetime.now(dt.UTC)


def assert_drama_fields(item: Any, drama: catalog.CatalogDrama) -> None:
    assert item["id"] == drama.id
    assert item["title"] == drama.title
    assert item["synopsis"] == drama.synopsis
    assert item["year"] == drama.year
    assert item["country"] == drama.country
    assert item["genres"] == list(drama.genres)
    assert item["episode_count"] == len(drama.episodes)


async def test_get_drama_with_every_episode_streamable(
    episode_worker: RpcWorker, stream_worker: RpcWorker, media: Media, start_api: StartApi
) -> None:
    settings = stream_settings("unused", media)
    async with open_s3(settings) as s3:
        keys = [episode.media_key for episode in DRAMA.episodes]
        assert await seed_media(s3, media.bucket, keys) > 0
    api = await start_api()

    reply = await api.get(f"/dramas/{DRAMA.id}")

    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert_drama_fields(reply.body, DRAMA)
    episodes = reply.body["episodes"]
    assert [e["number"] for e in episodes] == [e.number for e in DRAMA.episodes]
    assert [e["title"] for e in episodes] == [e.title for e in DRAMA.episodes]
    assert [e["duration_s"] for e in episodes] == [e.duration_s for e in DRAMA.episodes]
    for episode, expected in zip(episodes, DRAMA.episodes, strict=True):
        assert_stream(episode["stream"], media, expected.media_key, reply)
    # Each URL plays: the endpoint checks signature and expiry as S3 does.
    async with aiohttp.ClientSession() as http:
        for episode in episodes:
            # encoded=True: the URL must reach the endpoint exactly as it was signed.
            async with http.get(URL(episode["stream"]["url"], encoded=True)) as response:
                assert response.status == 200, await response.text()
                assert (await response.read()).startswith(b"#EXTM3U")

    # Every other drama too: its episodes, in order, each with its own media key.
    for drama in CATALOGUE[1:]:
        reply = await api.get(f"/dramas/{drama.id}")
        assert reply.status == 200
        assert_drama_fields(reply.body, drama)
        assert [e["number"] for e in reply.body["episodes"]] == [e.number for e in drama.episodes]
        for episode, expected in zip(reply.body["episodes"], drama.episodes, strict=True):
            assert_stream(episode["stream"], media, expected.media_key, reply)


async def walk(api: Api, **params: str) -> list[Reply]:
    """The pages of the catalogue, following next_cursor until it is null."""
    pages: list[Reply] = []
    cursor: str | None = None
    while True:
        reply = await api.get("/dramas", **params, **({"cursor": cursor} if cursor else {}))
        assert reply.status == 200
        assert reply.content_type == "application/json"
        pages.append(reply)
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str)
        assert len(pages) <= len(CATALOGUE), "next_cursor never ends"


async def test_list_dramas_walks_every_page(
    episode_worker: RpcWorker, stream_worker: RpcWorker, media: Media, start_api: StartApi
) -> None:
    api = await start_api()

    for limit, sizes in [
        ("7", [7] * 6),
        ("5", [5] * 8 + [2]),
        ("100", [42]),
        (None, [20, 20, 2]),  # the default limit is 20
    ]:
        pages = await walk(api, **({"limit": limit} if limit else {}))
        assert [len(page.body["items"]) for page in pages] == sizes, limit
        items = [(item, page) for page in pages for item in page.body["items"]]
        # Every drama exactly once, in id order.
        assert [item["id"] for item, _ in items] == [drama.id for drama in CATALOGUE]
        for (item, page), drama in zip(items, CATALOGUE, strict=True):
            assert_drama_fields(item, drama)
            first = item["first_episode"]
            assert first is not None
            assert first["number"] == 1
            assert first["title"] == drama.episodes[0].title
            assert first["duration_s"] == drama.episodes[0].duration_s
            assert_stream(first["stream"], media, drama.episodes[0].media_key, page)

    # A cursor past the last drama is a valid, empty last page.
    past_end = base64.urlsafe_b64encode(f"v1:{CATALOGUE[-1].id}".encode()).decode().rstrip("=")
    reply = await api.get("/dramas", cursor=past_end)
    assert reply.status == 200
    assert reply.body == {"items": [], "next_cursor": None}


async def test_health_and_readiness(
    episode_worker: RpcWorker, stream_worker: RpcWorker, start_api: StartApi
) -> None:
    api = await start_api()
    healthz = await api.get("/healthz")
    assert (healthz.status, healthz.body) == (200, {"status": "ok"})
    readyz = await api.get("/readyz")
    assert (readyz.status, readyz.body) == (200, {"status": "ready"})


# -- what the client gets wrong ---------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_bad_requests_are_400_problems(
    episode_worker: RpcWorker, stream_worker: RpcWorker, start_api: StartApi
) -> None:
    api = await start_api()
    for raw_id in [
        "abc",
        "0",
        "-1",
        "1.5",
        "1e3",
        "123456789012345678901234567890",
        str(MAX_ID + 1),
    ]:
        body = assert_problem(
            await api.get(f"/dramas/{raw_id}"), 400, "invalid-parameter", f"/dramas/{raw_id}"
        )
        assert body["title"] == "Invalid parameter"
        assert "id" in body["detail"]
    for raw_number in ["0", "x", "1.5"]:
        path = f"/dramas/1/episodes/{raw_number}/playlist.m3u8"
        body = assert_problem(await api.get(path), 400, "invalid-parameter", path)
        assert body["detail"].startswith("episode number must be"), body
    for limit in ["0", "101", "x", "-1", "", "7.0"]:
        body = assert_problem(
            await api.get("/dramas", limit=limit), 400, "invalid-parameter", "/dramas"
        )
        assert "limit" in body["detail"]
    # An empty cursor is a string, as the document allows: the first page (issue 19).
    first, page = await api.get("/dramas", cursor=""), await api.get("/dramas")
    assert first.status == 200
    # The same page; its stream URLs are signed each second, so compare the dramas.
    assert [item["id"] for item in first.body["items"]] == [i["id"] for i in page.body["items"]]
    assert first.body["next_cursor"] == page.body["next_cursor"]
    for cursor in [
        "garbage",
        "!!!",
        _b64("hello"),
        _b64("v2:5"),
        _b64("v1:abc"),
        _b64("v1:-1"),
        _b64(f"v1:{MAX_ID + 1}"),
    ]:
        body = assert_problem(
            await api.get("/dramas", cursor=cursor), 400, "invalid-parameter", "/dramas"
        )
        assert "cursor" in body["detail"]


async def test_unknown_drama_route_and_method(
    episode_worker: RpcWorker, stream_worker: RpcWorker, start_api: StartApi
) -> None:
    api = await start_api()
    for drama_id in [len(CATALOGUE) + 1, MAX_ID]:
        body = assert_problem(
            await api.get(f"/dramas/{drama_id}"), 404, "not-found", f"/dramas/{drama_id}"
        )
        assert str(drama_id) in body["detail"]

    for path in ["/nope", "/dramas/", "/dramas/1/episodes"]:
        body = assert_problem(await api.get(path), 404, "http", path)
        assert body["title"] == "Not Found"

    for method, path in [("POST", "/dramas"), ("DELETE", "/dramas/1"), ("PUT", "/healthz")]:
        reply = await api.request(method, path)
        body = assert_problem(reply, 405, "http", path)
        assert body["title"] == "Method Not Allowed"
        assert "GET" in reply.headers["Allow"]


# -- what the workers and the broker get wrong ------------------------------------------------


@pytest.mark.parametrize("missing_method", [LIST, PRESIGN])
async def test_no_worker_is_a_fast_503(
    missing_method: str,
    broker_url: str,
    episode_store: EpisodeStore,
    media: Media,
    start_api: StartApi,
) -> None:
    rpc_timeout_ms = 5000
    async with AsyncExitStack() as stack:
        if missing_method != LIST:
            await stack.enter_async_context(episode_service(broker_url, episode_store))
        if missing_method != PRESIGN:
            await stack.enter_async_context(stream_service(broker_url, media))
        api = await start_api(rpc_timeout_ms=rpc_timeout_ms)

        for path in [f"/dramas/{DRAMA.id}", "/dramas"]:
            reply = await api.get(path)
            body = assert_problem(reply, 503, "upstream-unavailable", path)
            assert missing_method in body["detail"]
            # The broker returns the unroutable request at once: no waiting for the timeout.
            assert reply.elapsed < rpc_timeout_ms / 1000 / 5


@pytest.mark.parametrize("slow_method", [LIST, PRESIGN])
async def test_worker_too_slow_is_a_504(
    slow_method: str,
    broker_url: str,
    episode_store: EpisodeStore,
    start_api: StartApi,
) -> None:
    rpc_timeout_ms = 300
    hold = Hold()
    async with AsyncExitStack() as stack:
        if slow_method == PRESIGN:
            await stack.enter_async_context(episode_service(broker_url, episode_store))
        await stack.enter_async_context(stand_in(broker_url, slow_method, hold))
        # Released before the stand-in stops, so that stopping need not wait for it.
        stack.callback(hold.release.set)
        api = await start_api(rpc_timeout_ms=rpc_timeout_ms)

        for path in [f"/dramas/{DRAMA.id}", "/dramas"]:
            reply = await api.get(path)
            body = assert_problem(reply, 504, "upstream-timeout", path)
            assert slow_method in body["detail"]
            assert hold.entered.is_set()
            assert rpc_timeout_ms / 1000 <= reply.elapsed < rpc_timeout_ms / 1000 + 1


@dataclass(frozen=True)
class Fault:
    method: str
    handler: Callable[[Any], Awaitable[Any]]
    status: int
    slug: str
    title: str


UPSTREAM_ERROR = (502, "upstream-error", "Upstream error")
NOT_FOUND = (404, "not-found", "Not found")


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault(LIST, crash, *UPSTREAM_ERROR), id="episode-crash"),
        pytest.param(Fault(LIST, refuse, *UPSTREAM_ERROR), id="episode-bad-request"),
        pytest.param(Fault(LIST, missing, *NOT_FOUND), id="episode-not-found"),
        pytest.param(Fault(PRESIGN, crash, *UPSTREAM_ERROR), id="stream-crash"),
        pytest.param(Fault(PRESIGN, missing, *NOT_FOUND), id="stream-not-found"),
    ],
)
async def test_worker_error_replies_map_to_http(
    fault: Fault, broker_url: str, episode_store: EpisodeStore, start_api: StartApi
) -> None:
    async with AsyncExitStack() as stack:
        if fault.method == PRESIGN:
            await stack.enter_async_context(episode_service(broker_url, episode_store))
        await stack.enter_async_context(stand_in(broker_url, fault.method, fault.handler))
        api = await start_api()

        # A page asks for nothing that may be missing: a worker's not_found is its fault (502).
        page_fault = (
            UPSTREAM_ERROR if fault.status == 404 else (fault.status, fault.slug, fault.title)
        )
        for path, (status, slug, title) in (
            (f"/dramas/{DRAMA.id}", (fault.status, fault.slug, fault.title)),
            ("/dramas", page_fault),
        ):
            body = assert_problem(await api.get(path), status, slug, path)
            assert body["title"] == title
            assert fault.method in body["detail"]
            # What the handler raised stays in the worker's log.
            assert INTERNAL_DETAIL not in body["detail"]


@pytest.mark.timing
async def test_not_ready_while_the_broker_connection_is_lost(
    broker_url: str, vhost: str, media: Media, start_api: StartApi
) -> None:
    hold = Hold()
    rpc_timeout_ms = 10_000
    async with AsyncExitStack() as stack:
        stream = await stack.enter_async_context(stream_service(broker_url, media))
        stand = await stack.enter_async_context(stand_in(broker_url, LIST, hold))
        stack.callback(hold.release.set)
        api = await start_api(rpc_timeout_ms=rpc_timeout_ms)
        rpc = api.app[handlers.RPC]
        assert isinstance(rpc, AmqpRpcClient)
        assert (await api.get("/readyz")).status == 200

        # A call in flight: it must fail as soon as the client sees its connection go.
        in_flight = asyncio.create_task(api.get(f"/dramas/{DRAMA.id}"))
        await hold.entered.wait()
        # Without permissions on the vhost, the client cannot reconnect until they are back:
        # the outage lasts exactly as long as the test wants.
        await rabbitmqctl("clear_permissions", "-p", vhost, "guest")
        await rabbitmqctl("close_all_connections", "-p", vhost, "test: connection loss")

        reply = await in_flight
        body = assert_problem(reply, 503, "upstream-unavailable", f"/dramas/{DRAMA.id}")
        assert LIST in body["detail"]
        assert reply.elapsed < rpc_timeout_ms / 1000 / 2

        assert_problem(await api.get("/readyz"), 503, "upstream-unavailable", "/readyz")
        # New calls fail at once too, instead of waiting for a broker that is not there.
        reply = await api.get("/dramas")
        assert_problem(reply, 503, "upstream-unavailable", "/dramas")
        assert reply.elapsed < 1
        assert (await api.get("/healthz")).status == 200  # alive all the same

        await rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        async with asyncio.timeout(20):
            await rpc.wait_ready()
            # Readiness also wants a consumer on each worker queue: the workers reconnect on
            # their own schedule (their `ready` can lag the broker's view), so it is polled.
            while (await api.get("/readyz")).status != 200:  # noqa: ASYNC110 - a probe, polled
                await asyncio.sleep(0.1)
        assert stream.ready
        assert stand.ready
        # The whole path works again: the stand-in, reconnected too, now answers at once.
        hold.release.set()
        path = f"/dramas/{DRAMA.id}"
        assert_problem(await api.get(path), 404, "not-found", path)


async def test_not_ready_once_the_rpc_client_is_closed(
    episode_worker: RpcWorker, stream_worker: RpcWorker, start_api: StartApi
) -> None:
    api = await start_api()
    assert (await api.get("/readyz")).status == 200
    rpc = api.app[handlers.RPC]
    assert isinstance(rpc, AmqpRpcClient)
    await rpc.close()
    assert_problem(await api.get("/readyz"), 503, "upstream-unavailable", "/readyz")
    assert_problem(await api.get("/dramas/1"), 503, "upstream-unavailable", "/dramas/1")


# -- the OpenAPI document ---------------------------------------------------------------------


async def test_openapi_document_is_valid_and_complete(
    episode_worker: RpcWorker, stream_worker: RpcWorker, start_api: StartApi
) -> None:
    api = await start_api()
    document = api.document
    assert document["openapi"].startswith("3.1.")
    validate_openapi(document, cls=OpenAPIV31SpecValidator)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)

    # Every route is documented, and every documented operation is a route. aiohttp adds a HEAD
    # route beside each GET; HEAD is implied by GET (RFC 9110), so it is not listed.
    routes = set()
    for route in api.app.router.routes():
        assert route.resource is not None
        routes.add((route.resource.canonical, route.method.lower()))
    heads = {(path, "get") for path, method in routes if method == "head"}
    assert heads <= routes
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    assert documented == routes - {(path, "head") for path, _ in heads}

    # The served document is itself an answer of the API, checked like any other.
    reply = await api.get("/openapi.json")
    assert reply.body == document

    # The checks of every reply can fail: bodies that break the schemas are caught...
    headers, now = reply.headers, dt.datetime.now(dt.UTC)
    for method, path, status, body in [
        ("GET", "/dramas/1", 200, {"id": 1}),
        ("GET", "/dramas", 200, {"items": [{"id": "1"}], "next_cursor": None}),
        ("GET", "/dramas/1", 404, {"type": "x", "title": "t", "status": 404}),
        ("GET", "/nope", 404, {"type": "x", "title": "t", "status": "404", "detail": "d"}),
    ]:
        content_type = "application/json" if status == 200 else PROBLEM_JSON
        with pytest.raises(jsonschema.ValidationError):
            api.check(method, path, Reply(status, content_type, headers, body, 0, now, now))
    # ... and so are statuses and content types the document does not give for the operation.
    for method, path, status, content_type in [
        ("GET", "/dramas/1", 200, PROBLEM_JSON),
        ("GET", "/dramas/1", 404, "application/json"),
        ("GET", "/healthz", 503, PROBLEM_JSON),
        ("GET", "/dramas", 404, PROBLEM_JSON),
        ("GET", "/nope", 500, PROBLEM_JSON),
        ("POST", "/dramas", 201, "application/json"),
    ]:
        with pytest.raises(AssertionError, match=r"does not document|undocumented"):
            api.check(method, path, Reply(status, content_type, headers, {}, 0, now, now))
