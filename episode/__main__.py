"""``python -m episode`` serves ``episode.list``; ``python -m episode seed`` loads the episodes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from opentelemetry.sdk.trace import TracerProvider

from broker import redact_url, service_main, serving_worker, stop_event
from catalog import sample

from .settings import Settings
from .store import EpisodeStore
from .worker import build_worker

log = logging.getLogger("episode")


async def run(settings: Settings) -> None:
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        store = await EpisodeStore.open(settings.database_url)
        stack.push_async_callback(store.close)
        worker = build_worker(settings, store)
        await stack.enter_async_context(serving_worker(worker, settings.worker))
        log.info("episode-service ready, broker %s", redact_url(settings.worker.amqp_url))
        await stop.wait()
        log.info("episode-service stopping")


def serve(settings: Settings, _provider: TracerProvider | None) -> None:
    asyncio.run(run(settings))


async def seed(settings: Settings, args: argparse.Namespace) -> None:
    store = await EpisodeStore.open(settings.database_url)
    try:
        inserted = await store.seed(sample(args.dramas), reset=args.reset)
    finally:
        await store.close()
    log.info("seeded %d episodes", inserted)


def seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dramas", type=int, default=None, help="generate this many dramas")
    parser.add_argument("--reset", action="store_true", help="delete existing episodes first")


def main(argv: list[str] | None = None) -> int:
    return service_main(
        service="episode-service",
        description=__doc__ or "",
        settings=Settings.from_env,
        serve=serve,
        seed=seed,
        seed_help="load the sample catalogue's episodes (idempotent)",
        seed_arguments=seed_arguments,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
