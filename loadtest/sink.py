"""``python -m loadtest sink``: an OTLP/HTTP trace receiver that counts, and keeps, what it is sent.

For machines without Jaeger: the benchmark points the services' exporters here so that tracing
costs what it costs in production (spans batched, encoded and sent), without a collector; with
``--out FILE`` every export request is also appended to FILE as one line of OTLP-JSON (ids in
hex, as the OTLP/JSON spec asks), which ``python -m loadtest analyze --input FILE`` reads.

The export is answered once decoded and counted: encoding JSON and writing happen in a writer
thread, so a slow disk never slows the services' exporters.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_OK = ExportTraceServiceResponse().SerializeToString()
_IDS = ("traceId", "spanId", "parentSpanId")
Payload = ExportTraceServiceRequest | dict[str, Any]


def otlp_json(payload: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request in OTLP-JSON: protobuf's JSON mapping, but ids in hex (it gives base64)."""
    document: dict[str, Any] = MessageToDict(payload)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for key in _IDS:
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return document


class SpanFile:
    """Appends export requests to a file as OTLP-JSON lines, from a thread of its own."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[Payload | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="otlp-json-writer")

    def put(self, payload: Payload) -> None:
        self._queue.put(payload)

    def _write(self) -> None:
        with self._path.open("a") as out:
            while (payload := self._queue.get()) is not None:
                document = payload if isinstance(payload, dict) else otlp_json(payload)
                out.write(json.dumps(document, separators=(",", ":")) + "\n")
                if self._queue.empty():  # flushed between bursts: readers see whole lines
                    out.flush()

    def __enter__(self) -> SpanFile:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Write what was received, then stop: after this the file holds every span."""
        self._queue.put(None)
        self._thread.join()


SPANS = web.AppKey("spans", list)
SPAN_FILE = web.AppKey("span_file", SpanFile)


def _decode(body: bytes, is_json: bool) -> tuple[Payload, int]:
    """The request and its span count; ValueError if it is not an ExportTraceServiceRequest."""
    if is_json:  # OTLP/HTTP's JSON encoding
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        resources = document.get("resourceSpans", [])
        return document, sum(len(s.get("spans", [])) for r in resources for s in r["scopeSpans"])
    payload = ExportTraceServiceRequest.FromString(body)  # DecodeError is a ValueError
    scopes = [scope for resource in payload.resource_spans for scope in resource.scope_spans]
    return payload, sum(len(scope.spans) for scope in scopes)


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    is_json = request.content_type == "application/json"
    try:
        payload, spans = _decode(body, is_json)
    except (ValueError, KeyError, AttributeError, TypeError):
        encoding = "JSON" if is_json else "protobuf"
        return web.Response(status=400, text=f"not an OTLP {encoding} ExportTraceServiceRequest")
    request.app[SPANS][0] += spans
    if SPAN_FILE in request.app:
        request.app[SPAN_FILE].put(payload)
    if is_json:
        return web.json_response({})
    return web.Response(body=_OK, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    return web.json_response({"spans": request.app[SPANS][0]})


def create_app(out: Path | None = None) -> web.Application:
    """The receiver; with ``out``, spans are appended there until the app is cleaned up."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SPANS] = [0]
    if out is not None:

        async def span_file(app: web.Application) -> AsyncIterator[None]:
            with SpanFile(out) as writer:
                app[SPAN_FILE] = writer
                yield

        app.cleanup_ctx.append(span_file)
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/count", count)
    return app


async def serve(host: str, port: int, out: Path | None) -> None:
    app = create_app(out)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"OTLP sink listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    print(f"received {app[SPANS][0]} spans", flush=True)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--out", type=Path, metavar="FILE", help="append spans as OTLP-JSON lines")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
