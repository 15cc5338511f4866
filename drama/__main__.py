"""``python -m drama`` serves the API; ``python -m drama seed`` loads the dramas."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from aiohttp import web
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

from broker import ConfigError, configure_logging, configure_tracing
from catalog import sample

from .app import create_app
from .settings import Settings
from .store import DramaStore

log = logging.getLogger("drama")


async def seed(settings: Settings, count: int | None, *, reset: bool) -> None:
    store = await DramaStore.open(settings.database_url)
    try:
        inserted = await store.seed(sample(count), reset=reset)
    finally:
        await store.close()
    log.info("seeded %d dramas", inserted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drama", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    seeder = commands.add_parser("seed", help="load the sample catalogue (idempotent)")
    seeder.add_argument("--dramas", type=int, default=None, help="generate this many dramas")
    seeder.add_argument("--reset", action="store_true", help="delete existing dramas first")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"drama-service: {exc}", file=sys.stderr)
        return 2
    configure_logging("drama-service", settings.log_level)
    if args.command == "seed":
        asyncio.run(seed(settings, args.dramas, reset=args.reset))
        return 0
    try:
        provider = configure_tracing("drama-service", os.environ)
    except ConfigError as exc:
        print(f"drama-service: {exc}", file=sys.stderr)
        return 2
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
    try:
        web.run_app(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            access_log=None,
            print=lambda _: log.info(
                "drama-service listening on http://%s:%d", settings.http_host, settings.http_port
            ),
            shutdown_timeout=10,
        )
    finally:
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    return 0


if __name__ == "__main__":
    sys.exit(main())
