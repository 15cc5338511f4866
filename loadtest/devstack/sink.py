"""``python -m loadtest sink``: an OTLP/HTTP trace receiver that counts, and keeps, what it is sent.

For machines without Jaeger: the benchmark points the services' exporters here so that tracing
costs what it costs in production (spans batched, encoded and sent), without a collector; with
``--out FILE`` every export request is also appended to FILE as one line of OTLP-JSON (ids in
hex, as the OTLP/JSON spec asks), which ``python -m loadtest analyze --input FILE`` reads. Past
``--max-mb`` the file is rotated (FILE.1, FILE.2...: ``analyze`` reads them with FILE).

The export is answered once decoded and counted: encoding JSON and writing happen in a writer
thread, so a slow disk never slows the services' exporters.
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from loadtest import cli
from loadtest.analysis import trace_api
from loadtest.otlp import DECODE_ERRORS, Payload, counted, otlp_json

_OK = ExportTraceServiceResponse().SerializeToString()


class SpanFile:
    """Appends export requests to a file as OTLP-JSON lines, from a thread of its own."""

    def __init__(self, path: Path, max_bytes: int = 0, backups: int = 0) -> None:
        """``max_bytes`` > 0: past that size FILE becomes FILE.1 (FILE.1 FILE.2...) and a new
        FILE starts; ``backups`` rotated files are kept, the oldest deleted."""
        self._path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._queue: queue.SimpleQueue[Payload | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="otlp-json-writer")

    def put(self, payload: Payload) -> None:
        self._queue.put(payload)

    def _write(self) -> None:
        out = self._path.open("a")
        try:
            while (payload := self._queue.get()) is not None:
                if not isinstance(payload, bytes):
                    line = json.dumps(otlp_json(payload), separators=(",", ":"))
                elif b"\n" in payload:  # pretty-printed: one line per request in the file
                    line = json.dumps(json.loads(payload), separators=(",", ":"))
                else:
                    line = payload.decode()
                out.write(line + "\n")
                if self._queue.empty():  # flushed between bursts: readers see whole lines
                    out.flush()
                if self._max_bytes and out.tell() >= self._max_bytes:
                    out.close()
                    self._rotate()
                    out = self._path.open("a")
        finally:
            out.close()

    def _rotate(self) -> None:
        """FILE -> FILE.1 -> FILE.2 ... (the oldest past ``backups`` deleted), whole lines each.

        By hand rather than logging's RotatingFileHandler: these are data lines written by one
        thread, with no formatting or locking to borrow, and the renames are these four lines.
        """
        self._path.with_name(f"{self._path.name}.{self._backups}").unlink(missing_ok=True)
        for number in range(self._backups - 1, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{number}")
            if older.exists():
                older.rename(self._path.with_name(f"{self._path.name}.{number + 1}"))
        if self._backups:
            self._path.rename(self._path.with_name(f"{self._path.name}.1"))
        else:
            self._path.unlink()

    def __enter__(self) -> SpanFile:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        """Write what was received, then stop: after this the file holds every span."""
        self._queue.put(None)
        self._thread.join()


SPANS = web.AppKey("spans", list)
SPAN_FILE = web.AppKey("span_file", SpanFile)


async def export(request: web.Request) -> web.Response:
    body = await request.read()  # aiohttp has undone any gzip or deflate Content-Encoding
    is_json = request.content_type == "application/json"
    try:
        payload, spans = counted(body, is_json)
    except DECODE_ERRORS:
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


def create_app(out: Path | None = None, max_bytes: int = 0, backups: int = 0) -> web.Application:
    """The receiver; with ``out``, spans are appended there until the app is cleaned up
    (rotated past ``max_bytes``, keeping ``backups`` older files: see `SpanFile`)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SPANS] = [0]
    if out is not None:

        async def span_file(app: web.Application) -> AsyncIterator[None]:
            with SpanFile(out, max_bytes, backups) as writer:
                app[SPAN_FILE] = writer
                yield

        app.cleanup_ctx.append(span_file)
        # The player reads traces back by id (loadtest/analysis/trace_api.py), as from Jaeger.
        trace_api.add_routes(app, trace_api.file_source(out))
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/count", count)
    return app


async def serve(
    host: str, port: int, out: Path | None, max_bytes: int = 0, backups: int = 0
) -> None:
    app = create_app(out, max_bytes, backups)
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


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest sink", __doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=cli.PORT, default=4318, help="port to listen on")
    parser.add_argument(
        "--out", type=cli.new_file, metavar="FILE", help="append spans as OTLP-JSON lines"
    )
    parser.add_argument(
        "--max-mb",
        type=cli.number(0, 1_000_000),
        default=50.0,
        help="with --out: past this size FILE becomes FILE.1 and a new FILE starts (0: never)",
    )
    parser.add_argument(
        "--backups",
        type=cli.integer(0, 1000),
        default=5,
        help="with --out: rotated files kept (FILE.1 newest); older ones are deleted",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    max_bytes = int(args.max_mb * 1024 * 1024)
    try:
        asyncio.run(serve(args.host, args.port, args.out, max_bytes, args.backups))
    except OSError as exc:  # the port is taken, the address is not this machine's...
        return cli.fail("loadtest sink", f"{args.host}:{args.port}: {exc.strerror or exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
