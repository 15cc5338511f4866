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
import base64
import json
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from loadtest import cli, trace_api

_OK = ExportTraceServiceResponse().SerializeToString()
Payload = ExportTraceServiceRequest | bytes  # bytes: an OTLP/JSON body, kept as it came


class _JsonScope(msgspec.Struct):
    spans: list[msgspec.Raw] = []  # counted, not parsed


class _JsonResource(msgspec.Struct, rename="camel"):
    scope_spans: list[_JsonScope]


class _JsonRequest(msgspec.Struct, rename="camel"):
    resource_spans: list[_JsonResource] = []


# Counting the spans of a JSON export without building them: ~10x cheaper than json.loads,
# and the sink's CPU counts in make bench's totals.
_json_request = msgspec.json.Decoder(_JsonRequest)
_SCALARS = {"string_value": "stringValue", "bool_value": "boolValue", "double_value": "doubleValue"}


def _value(value: AnyValue) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}  # int64 is a string in protobuf's JSON
    if kind == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode()}
    if kind == "array_value":
        return {"arrayValue": {"values": [_value(item) for item in value.array_value.values]}}
    if kind == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(value.kvlist_value.values)}}
    return {_SCALARS[kind]: getattr(value, kind)}


def _attributes(pairs: Iterable[KeyValue]) -> list[dict[str, Any]]:
    return [{"key": pair.key, "value": _value(pair.value)} for pair in pairs]


def _nonzero(**fields: Any) -> dict[str, Any]:
    """Protobuf's JSON leaves out fields at their default; so does this."""
    return {key: value for key, value in fields.items() if value not in ("", 0, "0", [], {})}


def _span(span: PbSpan) -> dict[str, Any]:
    document = _nonzero(
        traceId=span.trace_id.hex(),
        spanId=span.span_id.hex(),
        traceState=span.trace_state,
        parentSpanId=span.parent_span_id.hex(),
        flags=span.flags,
        name=span.name,
        kind=span.kind,
        startTimeUnixNano=str(span.start_time_unix_nano),
        endTimeUnixNano=str(span.end_time_unix_nano),
        attributes=_attributes(span.attributes),
        droppedAttributesCount=span.dropped_attributes_count,
        events=[
            _nonzero(
                timeUnixNano=str(event.time_unix_nano),
                name=event.name,
                attributes=_attributes(event.attributes),
                droppedAttributesCount=event.dropped_attributes_count,
            )
            for event in span.events
        ],
        droppedEventsCount=span.dropped_events_count,
        links=[
            _nonzero(
                traceId=link.trace_id.hex(),
                spanId=link.span_id.hex(),
                traceState=link.trace_state,
                attributes=_attributes(link.attributes),
                droppedAttributesCount=link.dropped_attributes_count,
                flags=link.flags,
            )
            for link in span.links
        ],
        droppedLinksCount=span.dropped_links_count,
    )
    if span.HasField("status"):  # a set message field is written even if empty
        document["status"] = _nonzero(message=span.status.message, code=span.status.code)
    return document


def _scope_spans(scope_spans: ScopeSpans) -> dict[str, Any]:
    document = _nonzero(
        spans=[_span(span) for span in scope_spans.spans], schemaUrl=scope_spans.schema_url
    )
    if scope_spans.HasField("scope"):
        scope = scope_spans.scope
        document["scope"] = _nonzero(
            name=scope.name,
            version=scope.version,
            attributes=_attributes(scope.attributes),
            droppedAttributesCount=scope.dropped_attributes_count,
        )
    return document


def _resource_spans(resource_spans: ResourceSpans) -> dict[str, Any]:
    document = _nonzero(
        scopeSpans=[_scope_spans(scope) for scope in resource_spans.scope_spans],
        schemaUrl=resource_spans.schema_url,
    )
    if resource_spans.HasField("resource"):
        resource = resource_spans.resource
        document["resource"] = _nonzero(
            attributes=_attributes(resource.attributes),
            droppedAttributesCount=resource.dropped_attributes_count,
        )
    return document


def otlp_json(payload: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request in OTLP-JSON: protobuf's JSON mapping, except ids in hex, as OTLP asks.

    Written out by hand: ``json_format.MessageToDict`` costs 3-5 times as much CPU a span.
    """
    return {"resourceSpans": [_resource_spans(resource) for resource in payload.resource_spans]}


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


def _decode(body: bytes, is_json: bool) -> tuple[Payload, int]:
    """The request and its span count; raises if it is not an ExportTraceServiceRequest."""
    if is_json:  # OTLP/HTTP's JSON encoding
        document = _json_request.decode(body)  # spans are not parsed, so not checked
        body.decode()  # UTF-8 inside them too, or the span file's writer would choke on it
        return body, sum(len(s.spans) for r in document.resource_spans for s in r.scope_spans)
    payload = ExportTraceServiceRequest.FromString(body)
    scopes = [scope for resource in payload.resource_spans for scope in resource.scope_spans]
    return payload, sum(len(scope.spans) for scope in scopes)


async def export(request: web.Request) -> web.Response:
    body = await request.read()  # aiohttp has undone any gzip or deflate Content-Encoding
    is_json = request.content_type == "application/json"
    try:
        payload, spans = _decode(body, is_json)
    except (DecodeError, msgspec.DecodeError, ValueError, KeyError, AttributeError, TypeError):
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
        # The player reads traces back by id (loadtest/trace_api.py), as from Jaeger.
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
