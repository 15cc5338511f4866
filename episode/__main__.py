"""``python -m episode`` serves ``episode.list``; ``python -m episode seed`` loads the episodes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys

from broker import ConfigError, configure_logging, configure_tracing, redact_url, stop_event
from catalog import sample

from .settings import Settings
from .store import EpisodeStore
from .worker import build_worker

log = logging.getLogger("episode")


async def serve(settings: Settings) -> None:
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        store = await EpisodeStore.open(settings.database_url)
        stack.push_async_callback(store.close)
        worker = build_worker(settings, store)
        await stack.enter_async_context(worker)
        log.info("episode-service ready, broker %s", redact_url(settings.amqp_url))
        await stop.wait()
        log.info("episode-service stopping")


async def seed(settings: Settings, count: int | None, *, reset: bool) -> None:
    store = await EpisodeStore.open(settings.database_url)
    try:
        inserted = await store.seed(sample(count), reset=reset)
    finally:
        await store.close()
    log.info("seeded %d episodes", inserted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m episode", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    seeder = commands.add_parser("seed", help="load the sample catalogue's episodes (idempotent)")
    seeder.add_argument("--dramas", type=int, default=None, help="generate this many dramas")
    seeder.add_argument("--reset", action="store_true", help="delete existing episodes first")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"episode-service: {exc}", file=sys.stderr)
        return 2
    configure_logging("episode-service", settings.log_level)
    if args.command == "seed":
        asyncio.run(seed(settings, args.dramas, reset=args.reset))
        return 0
    try:
        provider = configure_tracing("episode-service", os.environ)
    except ConfigError as exc:
        print(f"episode-service: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    finally:
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    return 0


if __name__ == "__main__":
    sys.exit(main())
