"""``python -m stream`` serves ``stream.presign``; ``python -m stream seed`` fills the bucket."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import aioboto3
from opentelemetry.sdk.trace import TracerProvider

from broker import redact_url, service_main, serving_worker, stop_event
from catalog import sample

from .media import DramaMedia, ffmpeg_path
from .settings import Settings
from .store import placeholder, seed_media
from .worker import build_worker, open_s3

log = logging.getLogger("stream")

# By default the bucket holds media for the hand-written catalogue only: a generated one of
# 10,000 dramas would mean 100,000s of objects, and pre-signing needs no object to exist.
SAMPLE_MEDIA_DRAMAS = 20


async def run(settings: Settings) -> None:
    stop = stop_event()
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3(settings))
        worker = build_worker(settings, s3)
        await stack.enter_async_context(serving_worker(worker, settings.worker))
        log.info(
            "stream-service ready, bucket %s, broker %s",
            settings.media_bucket,
            redact_url(settings.worker.amqp_url),
        )
        await stop.wait()
        log.info("stream-service stopping")


def serve(settings: Settings, _provider: TracerProvider | None) -> None:
    asyncio.run(run(settings))


async def seed(
    settings: Settings, args: argparse.Namespace, session: aioboto3.Session | None = None
) -> None:
    """Upload the media of ``args.dramas``; ``session``: the credentials, by default the
    process's (the dev stack seeds in its own process and passes the embedded S3's)."""
    dramas = sample(args.dramas)
    keys = [e.media_key for d in dramas for e in d.episodes]
    ffmpeg = None if args.placeholder else ffmpeg_path()
    if ffmpeg is None and not args.placeholder:
        log.warning("no ffmpeg (Debian package ffmpeg): seeding unplayable placeholder media")
    async with open_s3(settings, session) as s3:
        if ffmpeg is None:
            uploaded = await seed_media(s3, settings.media_bucket, keys, sample=placeholder)
        else:
            episodes = {e.media_key: (d.id, d.title) for d in dramas for e in d.episodes}
            async with DramaMedia(episodes, ffmpeg=ffmpeg, cache=args.cache) as media:
                uploaded = await seed_media(s3, settings.media_bucket, keys, sample=media.objects)
    log.info("seeded %d media objects into bucket %s", uploaded, settings.media_bucket)


def seed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dramas",
        type=int,
        default=SAMPLE_MEDIA_DRAMAS,
        help=f"media for the first N dramas of the catalogue (default {SAMPLE_MEDIA_DRAMAS})",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="keep each drama's encoding in DIR and reuse it on the next seed",
    )
    parser.add_argument(
        "--placeholder",
        action="store_true",
        help="upload unplayable placeholder segments, not media encoded with ffmpeg",
    )


def main(argv: list[str] | None = None) -> int:
    return service_main(
        service="stream-service",
        description=__doc__ or "",
        settings=Settings.from_env,
        serve=serve,
        seed=seed,
        seed_help="upload a playable HLS sample per episode, made with ffmpeg (idempotent)",
        seed_arguments=seed_arguments,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
