"""``python -m loadtest.devstack.front``: the player and the API on one origin, as Istio's gateway.

``make run`` starts this in front of drama-service and the OTLP sink, routing by path the way
the cluster's VirtualService routes (k8s/base/web/virtualservice.yaml):

- ``/dramas...``, ``/openapi.json``: drama-service (the API);
- ``/api/...``: the trace store, here the sink (``/api/v3/traces/{id}``, Jaeger's shape, and
  ``/api/analysis/traces/{id}``, the analysed trace; loadtest/analysis/trace_api.py);
- anything else: the built player (web/dist), ``index.html`` for ``/``.

One origin means no CORS: the page's scripts read every response header, ``traceresponse`` and
``Server-Timing`` included. A back end that does not answer becomes a 502 problem+json, which
the page shows as "the API is not reachable" with a retry.

A reverse proxy of ~40 lines with aiohttp, not nginx: ``make run`` needs nothing but Python
(the container image of the player is nginx: web/Dockerfile).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from loadtest.analysis.trace_api import serve_until_stopped

__all__ = ["create_app", "main", "upstream_for"]

# RFC 9110 section 7.6.1: connection-specific fields are not forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
API_PREFIXES = ("/dramas", "/openapi.json")
TRACE_PREFIX = "/api/"

SESSION = web.AppKey("session", aiohttp.ClientSession)
ROOT = web.AppKey("root", Path)
UPSTREAMS = web.AppKey("upstreams", dict)


def upstream_for(path: str, upstreams: dict[str, str]) -> str | None:
    """The base URL that serves ``path``, or None for a static file."""
    if path.startswith(API_PREFIXES):
        return upstreams["api"]
    if path.startswith(TRACE_PREFIX):
        return upstreams.get("traces")
    return None


def _problem(status: int, title: str, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type="application/problem+json")


async def _proxy(request: web.Request, base: str) -> web.StreamResponse:
    headers = CIMultiDict(
        (name, value) for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP
    )
    body = await request.read() if request.can_read_body else None
    try:
        async with request.app[SESSION].request(
            request.method, base + request.rel_url.raw_path_qs, headers=headers, data=body
        ) as upstream:
            payload = await upstream.read()
            out = web.Response(status=upstream.status, body=payload)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    out.headers.add(name, value)
            return out
    except (aiohttp.ClientConnectionError, TimeoutError):
        return _problem(502, "Bad gateway", f"{base} is not reachable")


async def route(request: web.Request) -> web.StreamResponse:
    path = request.path
    upstreams = request.app[UPSTREAMS]
    base = upstream_for(path, upstreams)
    if base is not None:
        return await _proxy(request, base)
    if path.startswith(TRACE_PREFIX):
        return _problem(503, "No trace store", "this stack exports no spans to read back")
    root = request.app[ROOT]
    name = "index.html" if path == "/" else path.lstrip("/")
    file = (root / name).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise web.HTTPNotFound(text="not found")
    # Vite names built assets by content hash: they never change under one name.
    immutable = file.parent.name == "assets"
    cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
    return web.FileResponse(file, headers={"Cache-Control": cache})


def create_app(root: Path, api: str, traces: str | None) -> web.Application:
    """The front: static files from ``root``, the API at ``api``, traces at ``traces``."""
    app = web.Application()
    app[ROOT] = root.resolve()
    app[UPSTREAMS] = {"api": api.rstrip("/")} | ({"traces": traces.rstrip("/")} if traces else {})

    async def session(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
            app[SESSION] = client
            yield

    app.cleanup_ctx.append(session)
    app.router.add_route("*", "/{tail:.*}", route)
    return app


async def serve(host: str, port: int, app: web.Application) -> None:
    await serve_until_stopped(app, host, port, f"player listening on http://{host}:{port}/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.devstack.front", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--root", type=Path, required=True, help="the built player (web/dist)")
    parser.add_argument("--api", required=True, metavar="URL", help="drama-service")
    parser.add_argument("--traces", metavar="URL", help="the trace read API (the OTLP sink)")
    args = parser.parse_args(argv)
    if not (args.root / "index.html").is_file():
        print(f"{args.root}/index.html is missing: build the player (make web)", file=sys.stderr)
        return 1
    asyncio.run(serve(args.host, args.port, create_app(args.root, args.api, args.traces)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
