"""The media bucket, as the seed command fills it: an HLS sample behind each media key.

Seeding must be safe to repeat and fast for a 10,000-drama catalogue, so it skips keys whose
playlist already exists and keeps a bounded number of S3 requests in flight. The playlist is
uploaded after its segments: a seed that stops half way never leaves a playlist whose segments are
missing, and the next seed finishes the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from stream.media import content_type, hls_sample

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.literals import BucketLocationConstraintType

__all__ = ["seed_media"]

# S3 answers HEAD of a missing object with a bare 404, so the code is the status itself.
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})

# The objects to put behind a media key, playlist at the key itself (see stream.media).
Sample = Callable[[str], Awaitable[Mapping[str, bytes]]]


async def placeholder(media_key: str) -> Mapping[str, bytes]:
    """The placeholder sample (`stream.media.hls_sample`): no video, no encoder needed."""
    return hls_sample(media_key)


async def seed_media(
    s3_client: S3Client,
    bucket: str,
    media_keys: Iterable[str],
    *,
    concurrency: int = 16,
    sample: Sample = placeholder,
) -> int:
    """Create ``bucket`` if missing and upload an HLS sample for each media key that has none.

    Returns the number of objects uploaded (0 when everything was already there). At most
    ``concurrency`` keys are seeded at once; give the client at least as many pooled connections
    (botocore's ``max_pool_connections`` defaults to 10) or the extra requests wait for one.
    An S3 error stops the seed and surfaces inside an ``ExceptionGroup``; what was uploaded
    stays, and the next seed completes it. ``sample`` makes the objects of a key (default: the
    placeholder); it is only asked for keys that have none yet.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    await _ensure_bucket(s3_client, bucket)
    # Workers share one iterator rather than one task per key, so a generator of 100,000 keys
    # is consumed lazily and duplicate keys are never uploaded twice by racing tasks.
    keys = _unique(media_keys)
    uploaded = 0

    async def worker() -> None:
        nonlocal uploaded
        for key in keys:
            # Await first, then add: `uploaded += await ...` would read the total before the
            # await and lose what other workers added meanwhile.
            count = await _seed_one(s3_client, bucket, key, sample)
            uploaded += count

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return uploaded


async def _ensure_bucket(s3_client: S3Client, bucket: str) -> None:
    region = s3_client.meta.region_name
    try:
        if region in (None, "us-east-1"):
            await s3_client.create_bucket(Bucket=bucket)
        else:
            # Outside us-east-1, S3 refuses a CreateBucket without a matching location.
            await s3_client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={
                    "LocationConstraint": cast("BucketLocationConstraintType", region)
                },
            )
    except s3_client.exceptions.BucketAlreadyOwnedByYou:
        pass


async def _seed_one(s3_client: S3Client, bucket: str, media_key: str, sample: Sample) -> int:
    if await _exists(s3_client, bucket, media_key):
        return 0
    objects = dict(await sample(media_key))
    playlist = objects.pop(media_key)
    for key, body in objects.items():
        await s3_client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type(key))
    await s3_client.put_object(
        Bucket=bucket, Key=media_key, Body=playlist, ContentType=content_type(media_key)
    )
    return len(objects) + 1


async def _exists(s3_client: S3Client, bucket: str, key: str) -> bool:
    try:
        await s3_client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return False
        raise
    return True


def _unique(keys: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for key in keys:
        if key not in seen:
            seen.add(key)
            yield key
