"""``python -m drama`` serves the API; ``python -m drama seed`` loads the dramas."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from broker import service_main
from catalog import sample

from .app import create_app
from .serverspan import sampled_server_spans
from .settings import Settings
from .store import DramaStore

log = logging.getLogger("drama")


async def seed(settings: Settings, args: argparse.Namespace) -> None:
    store = await DramaStore.open(settings.database_url)
    try:
        inserted = await store.seed(sample(args.dramas), reset=args.reset)
    finally:
        await store.close()
    log.info("seeded %d dramas", inserted)


def serve(settings: Settings, provider: TracerProvider | None) -> None:
    if provider is not None:
        # The stable HTTP conventions (http.response.status_code, url.path...), not the old.
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        # Probes and the document are not requests worth a trace.
        os.environ.setdefault(
            "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS",
            "/healthz$,/readyz$,/metrics$,/openapi.json$",
        )
        # Puts the server-span middleware in front of every web.Application created after it.
        AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    app = create_app(settings)
    if provider is not None:
        # ... and only the requests whose trace records reach it (adr/otel-server-span-gate.md).
        sampled_server_spans(app, provider)
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=lambda _: log.info(
            "drama-service listening on http://%s:%d", settings.http_host, settings.http_port
        ),
        shutdown_timeout=10,
        # A client that goes away cancels its handler, and with it the handler's RPCs.
        handler_cancellation=True,
        # Closes a connection that has not sent a whole request within this time of opening
        # or of its last response: the header read timeout (slowloris), and the idle timeout.
        keepalive_timeout=settings.http_idle_timeout_s,
    )


def seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dramas", type=int, default=None, help="generate this many dramas")
    parser.add_argument("--reset", action="store_true", help="delete existing dramas first")


def main(argv: list[str] | None = None) -> int:
    return service_main(
        service="drama-service",
        description=__doc__ or "",
        settings=Settings.from_env,
        serve=serve,
        seed=seed,
        seed_help="load the sample catalogue (idempotent)",
        seed_arguments=seed_arguments,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
