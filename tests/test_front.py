"""The local front of ``make run``: the built player and the API on one origin.

A real upstream (an aiohttp app on a socket) stands in for drama-service, so the proxy's
forwarding of methods, queries and headers is what a browser would meet.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from loadtest.analysis.categories import CATEGORIES
from loadtest.devstack.front import create_app
from tests.conftest import free_port

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


def built_player(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><div id=root></div>")
    (root / "assets" / "index-abc.js").write_text("console.log(1)")
    (root.parent / "secret.txt").write_text("not for the browser")
    return root


async def test_static_files_api_and_traces_on_one_origin(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def api(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers.get("traceparent")))
        headers = {"traceresponse": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        return web.json_response({"path": request.path_qs}, headers=headers)

    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", api)
    async with TestServer(upstream, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")
        client = await aiohttp_client(create_app(built_player(tmp_path / "dist"), base, base))

        index = await client.get("/")
        assert index.status == 200
        assert index.headers["Cache-Control"] == "no-cache"
        assert "<div id=root>" in await index.text()
        asset = await client.get("/assets/index-abc.js")
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"

        reply = await client.get("/dramas?limit=8&cursor=djE6Mg", headers={"traceparent": "x"})
        assert reply.status == 200
        assert reply.headers["traceresponse"].startswith("00-111")
        assert await reply.json() == {"path": "/dramas?limit=8&cursor=djE6Mg"}
        trace = await client.get("/api/analysis/traces/" + "1" * 32)
        assert trace.status == 200
        assert seen == [
            ("GET", "/dramas?limit=8&cursor=djE6Mg", "x"),
            ("GET", "/api/analysis/traces/" + "1" * 32, None),
        ]

        for path in ("/missing.js", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
            assert (await client.get(path)).status == 404, path


async def test_a_back_end_that_does_not_answer_is_a_502_problem(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(built_player(tmp_path / "dist"), down, None))
    reply = await client.get("/dramas/1")
    assert (reply.status, reply.content_type) == (502, "application/problem+json")
    assert json.loads(await reply.text())["detail"] == f"{down} is not reachable"
    # No trace store configured (spans sent elsewhere): said so, not proxied into the void.
    reply = await client.get("/api/v3/traces/" + "1" * 32)
    assert reply.status == 503


def test_the_player_draws_every_category_the_analyser_names() -> None:
    """The categories come from Python (the analyser); the page only colours them. A category
    added there without a colour here would be drawn as a blank swatch and an invisible bar."""
    web = Path(__file__).resolve().parent.parent / "web" / "src"
    styles = (web / "styles.css").read_text()
    labels = (web / "components" / "Waterfall.tsx").read_text()
    for category in CATEGORIES:
        assert f".cat-{category} {{ background: var(--{category}); }}" in styles, category
        assert f"--{category}: #" in styles, category
        assert f"\n  {category}: " in labels, category
