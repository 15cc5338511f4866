"""``python -m stream`` serves ``stream.presign``; ``python -m stream seed`` fills the bucket."""

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
from .store import seed_media
from .worker import build_worker, open_s3

log = logging.getLogger("stream")

# By default the bucket holds media for the hand-written catalogue only: a generated one of
# 10,000 dramas would mean 100,000s of objects, and pre-signing needs no object to exist.
SAMPLE_MEDIA_DRAMAS = 20


async def serve(settings: Settings) -> None:
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3(settings))
        await stack.enter_async_context(build_worker(settings, s3))
        log.info(
            "stream-service ready, bucket %s, broker %s",
            settings.media_bucket,
            redact_url(settings.amqp_url),
        )
        await stop.wait()
        log.info("stream-service stopping")


async def seed(settings: Settings, dramas: int) -> None:
    keys = [e.media_key for d in sample(dramas) for e in d.episodes]
    async with open_s3(settings) as s3:
        uploaded = await seed_media(s3, settings.media_bucket, keys)
    log.info("seeded %d media objects into bucket %s", uploaded, settings.media_bucket)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    seeder = commands.add_parser("seed", help="upload an HLS sample per episode (idempotent)")
    seeder.add_argument(
        "--dramas",
        type=int,
        default=SAMPLE_MEDIA_DRAMAS,
        help=f"media for the first N dramas of the catalogue (default {SAMPLE_MEDIA_DRAMAS})",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return 2
    configure_logging("stream-service", settings.log_level)
    if args.command == "seed":
        asyncio.run(seed(settings, args.dramas))
        return 0
    try:
        provider = configure_tracing("stream-service", os.environ)
    except ConfigError as exc:
        print(f"stream-service: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    finally:
        if provider is not None:
            provider.shutdown()  # flush the spans still batched
    return 0


if __name__ == "__main__":
    sys.exit(main())
