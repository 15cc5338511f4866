"""stream-service: serves ``stream.presign`` and ``stream.playlist`` with one S3 client for the
process's life.

The URLs are signed by `stream.presign` (a few µs each) unless the client's configuration needs
botocore's own signer; that is decided once, on the first call, by comparing the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from opentelemetry import trace

from broker import BadRequest, NotFound, RpcWorker, recorded_span

from .contract import (
    MAX_KEYS,
    PLAYLIST,
    PRESIGN,
    QUEUE,
    Presign,
    PresignedUrl,
    PresignedUrls,
    SignedPlaylist,
    SignPlaylist,
)
from .playlist import MAX_PLAYLIST_BYTES, PlaylistError, sign_playlist, validate_key
from .presign import Presigner, presigner_for
from .settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


@contextlib.asynccontextmanager
async def open_s3(
    settings: Settings, session: aioboto3.Session | None = None
) -> AsyncIterator[S3Client]:
    """The S3 client: path-style against a local endpoint, virtual-hosted against AWS.
    Credentials come from ``session``, by default one that reads the process's environment."""
    session = session or aioboto3.Session()
    async with session.client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=s3_config(settings)
    ) as s3:
        yield s3


def s3_config(settings: Settings) -> AioConfig:
    """The S3 client's configuration (the pre-signing benchmark builds the same client)."""
    return AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "virtual"},
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=16,  # the seed keeps 16 uploads in flight
    )


class Procedures:
    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        ttl_s: int,
        tracer_provider: trace.TracerProvider | None = None,
        presigner: Presigner | None = None,
    ) -> None:
        """``presigner`` is chosen on the first call by default (see `presigner_for`)."""
        self._s3 = s3
        self._bucket = bucket
        self._ttl_s = ttl_s
        self._tracer = trace.get_tracer("drama_streaming.stream", tracer_provider=tracer_provider)
        self._tracer_provider = tracer_provider
        self._presigner = presigner
        self._presigner_lock = asyncio.Lock()

    async def presigner(self) -> Presigner:
        """The presigner, chosen on first use: choosing it asks botocore for a probe URL."""
        if self._presigner is None:
            async with self._presigner_lock:
                if self._presigner is None:
                    self._presigner = await presigner_for(self._s3, self._bucket, self._ttl_s)
        return self._presigner

    async def presign(self, request: Presign) -> PresignedUrls:
        keys = request.keys
        if len(keys) > MAX_KEYS:
            raise BadRequest(f"at most {MAX_KEYS} keys per call")
        if any(not key or key.startswith("/") for key in keys):
            raise BadRequest("keys must be non-empty and relative")
        presigner = await self.presigner()
        # Signing is local computation (no request to S3): the URLs are valid from now on.
        now = dt.datetime.now(dt.UTC)
        with recorded_span(
            self._tracer,
            self._tracer_provider,
            "S3 presign",
            attributes={
                "aws.s3.bucket": self._bucket,
                "rpc.method": PRESIGN,
                "drama_streaming.presign.keys": len(keys),
                "drama_streaming.presign.signer": presigner.name,
            },
        ):
            urls = await presigner.urls(keys, now)
        # Clamped to the signing credentials' expiry (stream/presign.py): true, not promised.
        ttl_s = presigner.ttl_at(now)
        expires_at = (now + dt.timedelta(seconds=ttl_s)).isoformat(timespec="seconds")
        return PresignedUrls(
            urls=[
                PresignedUrl(key=key, url=url, expires_at=expires_at)
                for key, url in zip(keys, urls, strict=True)
            ]
        )

    async def playlist(self, request: SignPlaylist) -> SignedPlaylist:
        """The playlist at ``request.key`` with every segment pre-signed (`stream.playlist`)."""
        key = request.key
        try:
            validate_key(key)
        except PlaylistError as exc:
            raise BadRequest(exc.message) from None
        text = await self._playlist_text(key)
        presigner = await self.presigner()
        now = dt.datetime.now(dt.UTC)
        expires_at = (now + dt.timedelta(seconds=self._ttl_s)).isoformat(timespec="seconds")

        async def sign(keys: Sequence[str]) -> list[str]:
            with recorded_span(
                self._tracer,
                self._tracer_provider,
                "S3 presign",
                attributes={
                    "aws.s3.bucket": self._bucket,
                    "rpc.method": PLAYLIST,
                    "drama_streaming.presign.keys": len(keys),
                    "drama_streaming.presign.signer": presigner.name,
                },
            ):
                return await presigner.urls(keys, now)

        body, segments = await sign_playlist(key, text, sign)
        return SignedPlaylist(key=key, body=body, segments=segments, expires_at=expires_at)

    async def _playlist_text(self, key: str) -> str:
        with recorded_span(
            self._tracer,
            self._tracer_provider,
            "S3 GetObject",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "rpc.system": "aws-api",
                "rpc.service": "S3",
                "rpc.method": "GetObject",
                "aws.s3.bucket": self._bucket,
                "aws.s3.key": key,
            },
        ):
            try:
                response = await self._s3.get_object(Bucket=self._bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise NotFound(f"no playlist {key}") from None
                raise
            async with response["Body"] as stream:
                if response["ContentLength"] > MAX_PLAYLIST_BYTES:
                    raise PlaylistError(f"{key} is larger than {MAX_PLAYLIST_BYTES} bytes")
                raw = await stream.read()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PlaylistError(f"{key} is not UTF-8 text") from None


def build_worker(settings: Settings, s3: S3Client) -> RpcWorker:
    worker = settings.worker.rpc_worker(QUEUE, "stream-service")
    procedures = Procedures(s3, settings.media_bucket, settings.presign_ttl_s)
    worker.register(PRESIGN, Presign, procedures.presign)
    worker.register(PLAYLIST, SignPlaylist, procedures.playlist)
    return worker
