"""``python -m loadtest.sink``: an OTLP/HTTP trace receiver that counts what it is sent.

For machines without Jaeger: the benchmark points the services' exporters here so that tracing
costs what it costs in production (spans batched, encoded and sent), without a collector.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SPANS = web.AppKey("spans", list)
_OK = ExportTraceServiceResponse().SerializeToString()


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        payload = ExportTraceServiceRequest.FromString(body)
    except ValueError:  # protobuf's DecodeError is a ValueError
        return web.Response(status=400, text="not an OTLP protobuf ExportTraceServiceRequest")
    request.app[SPANS][0] += sum(
        len(scope.spans) for resource in payload.resource_spans for scope in resource.scope_spans
    )
    return web.Response(body=_OK, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    return web.json_response({"spans": request.app[SPANS][0]})


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SPANS] = [0]
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/count", count)
    return app


async def serve(host: str, port: int) -> None:
    app = create_app()
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
    parser = argparse.ArgumentParser(prog="python -m loadtest.sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
