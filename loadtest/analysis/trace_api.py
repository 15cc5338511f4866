"""One trace by its id, raw and analysed: what the player's waterfall reads.

Two routes, for an aiohttp app:

- ``GET /api/v3/traces/{trace_id}``: the trace's spans as OTLP-JSON in Jaeger v2's envelope,
  ``{"result": {"resourceSpans": [...]}}``, or 404 ``{"error": {...}}``: the shape of Jaeger's own
  query API, so the player reads a trace the same way from the sink (``make run``) and from a
  cluster's Jaeger.
- ``GET /api/analysis/traces/{trace_id}``: the trace analysed by `loadtest.analysis.critical_path`
  (the rules ``python -m loadtest analyze`` applies, not a second copy of them in JavaScript): every
  span with its category and whether it holds the critical path, the critical path, and the
  per-category totals, which tile the root span's duration exactly (integer microseconds).

Where the spans come from is a `TraceSource`: the sink's span file (`file_source`, mounted by
``python -m loadtest sink --out FILE``), or a Jaeger query service (`jaeger_source`, which
``python -m loadtest.analysis.trace_api --jaeger URL`` serves, as the cluster's ``trace-analysis``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from loadtest.analysis.critical_path import analyse_trace, span_categories
from loadtest.analysis.traces import Span, Trace, TraceFormatError, document_spans, group
from loadtest.otlp import rotated_set

__all__ = ["TraceSource", "add_routes", "file_source", "jaeger_source", "waterfall"]

# A source answers a trace id (32 lower-case hex digits) with OTLP-JSON resourceSpans, or None.
TraceSource = Callable[[str], Awaitable[list[dict[str, Any]] | None]]
SOURCE: web.AppKey[TraceSource] = web.AppKey("trace_source")

_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def _spans_of(resource_spans: dict[str, Any], trace_id: str) -> dict[str, Any] | None:
    """``resource_spans`` with only the spans of ``trace_id``; None if none is left."""
    scopes = []
    for scope in resource_spans.get("scopeSpans", []):
        spans = [s for s in scope.get("spans", []) if s.get("traceId", "").lower() == trace_id]
        if spans:
            scopes.append({**scope, "spans": spans})
    return {**resource_spans, "scopeSpans": scopes} if scopes else None


def _scan(path: Path, trace_id: str) -> list[dict[str, Any]]:
    """The trace's spans in ``path`` and the files the sink rotated it into."""
    found: list[dict[str, Any]] = []
    for part in rotated_set(path):
        try:
            lines = part.open(encoding="utf-8")
        except FileNotFoundError:  # rotated away meanwhile, or nothing written yet
            continue
        with lines:
            for line in lines:
                # Ids are hex in OTLP-JSON: a substring test skips the other requests unparsed.
                if trace_id not in line or not line.endswith("\n"):
                    continue
                for resource_spans in json.loads(line).get("resourceSpans", []):
                    kept = _spans_of(resource_spans, trace_id)
                    if kept is not None:
                        found.append(kept)
    return found


def file_source(path: Path) -> TraceSource:
    """Spans from a file of OTLP-JSON lines as the sink writes them, and from its rotated files
    (read on each request)."""

    async def source(trace_id: str) -> list[dict[str, Any]] | None:
        found = await asyncio.to_thread(_scan, path, trace_id)
        return found or None

    return source


def jaeger_source(base_url: str, session: aiohttp.ClientSession) -> TraceSource:
    """Spans from a Jaeger v2 query service's ``/api/v3/traces/{id}``."""
    base = base_url.rstrip("/")

    async def source(trace_id: str) -> list[dict[str, Any]] | None:
        async with session.get(f"{base}/api/v3/traces/{trace_id}") as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            document = await response.json()
        resource_spans: list[dict[str, Any]] = document.get("result", {}).get("resourceSpans", [])
        return resource_spans or None

    return source


def _depths(spans: list[Span]) -> list[tuple[Span, int]]:
    """Spans in tree order (each parent before its children, siblings by start), with depth."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else ""
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[Span, int]] = []
    stack = [(span, 0) for span in sorted(children.get("", []), key=_order, reverse=True)]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        below = sorted(children.get(span.span_id, []), key=_order, reverse=True)
        stack += [(child, depth + 1) for child in below]
    return ordered


def _order(span: Span) -> tuple[int, int, str]:
    return (span.start_us, -span.end_us, span.span_id)


def waterfall(trace: Trace) -> dict[str, Any] | None:
    """The analysed trace the player draws; None if no span roots it."""
    result = analyse_trace(trace)
    if result is None:
        return None
    categories = span_categories(trace)
    on_path = {step.span.span_id: step.self_us for step in result.critical_path}
    origin = result.root.start_us
    document = result.to_json()
    document["spans"] = [
        {
            "span_id": span.span_id,
            "parent_id": span.parent_id,
            "depth": depth,
            "service": span.service,
            "name": span.name,
            "kind": span.kind,
            "start_ms": (span.start_us - origin) / 1000,
            "duration_ms": (span.end_us - span.start_us) / 1000,
            "category": categories[span.span_id],
            "critical": span.span_id in on_path,
            "self_ms": on_path.get(span.span_id, 0) / 1000,
        }
        for span, depth in _depths(list(trace.spans))
    ]
    return document


def _not_found(trace_id: str) -> web.Response:
    # Jaeger's error envelope, so a client handles both the same way.
    error = {"httpCode": 404, "message": f"trace {trace_id} not found"}
    return web.json_response({"error": error}, status=404)


def _trace_id(request: web.Request) -> str:
    trace_id = request.match_info["trace_id"].lower()
    if not _TRACE_ID.fullmatch(trace_id):
        error = {"httpCode": 400, "message": "a trace id is 32 hexadecimal digits"}
        raise web.HTTPBadRequest(text=json.dumps({"error": error}), content_type="application/json")
    return trace_id


async def raw_trace(request: web.Request) -> web.Response:
    trace_id = _trace_id(request)
    found = await request.app[SOURCE](trace_id)
    if found is None:
        return _not_found(trace_id)
    return web.json_response({"result": {"resourceSpans": found}})


async def analysed_trace(request: web.Request) -> web.Response:
    trace_id = _trace_id(request)
    found = await request.app[SOURCE](trace_id)
    if found is None:
        return _not_found(trace_id)
    try:
        traces = group(document_spans({"resourceSpans": found}))
    except (TraceFormatError, KeyError, ValueError) as exc:
        error = {"httpCode": 502, "message": f"the trace's spans are malformed: {exc}"}
        return web.json_response({"error": error}, status=502)
    document = waterfall(traces[0]) if traces else None
    if document is None:
        return _not_found(trace_id)
    return web.json_response(document, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, source: TraceSource | None, *, raw: bool = True) -> None:
    """Serve the analysed trace from ``source``, and with ``raw`` Jaeger's shape of it too.

    Without ``source`` here, set ``app[SOURCE]`` before the app serves (in a cleanup context).
    """
    if source is not None:
        app[SOURCE] = source
    if raw:
        app.router.add_get("/api/v3/traces/{trace_id}", raw_trace)
    app.router.add_get("/api/analysis/traces/{trace_id}", analysed_trace)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int, jaeger: str) -> None:
    app = web.Application()
    timeout = aiohttp.ClientTimeout(total=10)

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=timeout) as client:
            app[SOURCE] = jaeger_source(jaeger, client)
            yield

    app.cleanup_ctx.append(session)
    add_routes(app, None, raw=False)
    app.router.add_get("/healthz", healthz)
    await serve_until_stopped(
        app, host, port, f"trace analysis listening on http://{host}:{port}, traces from {jaeger}"
    )


async def serve_until_stopped(app: web.Application, host: str, port: int, banner: str) -> None:
    """Serve ``app`` on ``host:port``, print ``banner``, and stop cleanly on SIGINT or SIGTERM."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(banner, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.analysis.trace_api", description=__doc__
    )
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's service
    parser.add_argument("--port", type=int, default=16687)
    parser.add_argument(
        "--jaeger", required=True, metavar="URL", help="Jaeger's query service, e.g. :16686"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.jaeger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
