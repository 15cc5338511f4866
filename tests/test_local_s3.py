"""The embedded S3 endpoint, seeded through aioboto3 and read the way a player reads it.

Pre-signed URLs are fetched with aiohttp over a real socket, so every check below is the one a
browser would meet: expiry, signature, access key, anonymous access.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from yarl import URL

from loadtest.devstack.local_s3 import LocalS3
from stream.media import hls_sample
from stream.sigv4 import verify_query_auth
from stream.store import seed_media

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3 import S3Client

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"  # noqa: S105
CONFIG = AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4")
KEYS = ["dramas/1/ep001/index.m3u8", "dramas/1/ep002/index.m3u8"]
OBJECTS_PER_KEY = len(hls_sample(KEYS[0]))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def local_s3() -> Iterator[LocalS3]:
    with LocalS3(credentials={ACCESS_KEY_ID: SECRET_ACCESS_KEY}) as server:
        yield server


def s3_client(
    endpoint_url: str,
    access_key_id: str = ACCESS_KEY_ID,
    secret_access_key: str = SECRET_ACCESS_KEY,
) -> ClientCreatorContext[S3Client]:
    return aioboto3.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=CONFIG,
    )


@pytest.fixture
async def s3(local_s3: LocalS3) -> AsyncIterator[S3Client]:
    async with s3_client(local_s3.url) as client:
        yield client


@pytest.fixture
def bucket() -> str:
    # moto's store is global to the process: a bucket of its own keeps each test apart.
    return f"media-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(
    http: aiohttp.ClientSession, url: str, method: str = "GET"
) -> tuple[int, bytes, str]:
    # encoded=True: the URL must reach the server exactly as signed, not re-quoted by yarl.
    async with http.request(method, URL(url, encoded=True)) as response:
        return response.status, await response.read(), response.content_type


async def presign(s3: S3Client, bucket: str, key: str, expires_in: int = 300) -> str:
    return await s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
    )


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def error_code(body: bytes) -> str:
    match = re.search(rb"<Code>([^<]*)</Code>", body)
    # Not an S3 error document: show what came instead.
    return match.group(1).decode() if match else repr(body[:80])


async def test_seeded_playlist_and_segment_are_served_by_presigned_urls(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    assert await seed_media(s3, bucket, KEYS) == len(KEYS) * OBJECTS_PER_KEY

    status, body, content_type = await fetch(http, await presign(s3, bucket, KEYS[0]))
    assert status == 200
    assert body == hls_sample(KEYS[0])[KEYS[0]]
    assert content_type == "application/vnd.apple.mpegurl"
    playlist = body.decode()
    assert playlist.startswith("#EXTM3U\n")
    assert "#EXT-X-ENDLIST" in playlist

    # A player resolves the segment URIs against the playlist's prefix.
    segment = next(line for line in playlist.splitlines() if not line.startswith("#"))
    status, body, content_type = await fetch(
        http, await presign(s3, bucket, f"dramas/1/ep001/{segment}")
    )
    assert status == 200
    assert content_type == "video/mp2t"
    assert len(body) % 188 == 0
    assert body[::188] == b"\x47" * (len(body) // 188)


async def test_second_seed_uploads_nothing(s3: S3Client, bucket: str) -> None:
    assert await seed_media(s3, bucket, KEYS[:1]) == OBJECTS_PER_KEY
    # The bucket exists now and the first key is there: only the second key is new.
    assert await seed_media(s3, bucket, KEYS) == OBJECTS_PER_KEY
    assert await seed_media(s3, bucket, KEYS + KEYS) == 0
    listing = await s3.list_objects_v2(Bucket=bucket)
    assert listing["KeyCount"] == len(KEYS) * OBJECTS_PER_KEY


async def test_key_needing_percent_encoding_is_served(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    key = "dramas/Café x+y~z/ep 001/index.m3u8"
    await seed_media(s3, bucket, [key])
    status, body, _ = await fetch(http, await presign(s3, bucket, key))
    assert (status, body[:7]) == (200, b"#EXTM3U")


async def test_expired_url_is_refused(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed_media(s3, bucket, KEYS[:1])
    # Sign an hour ago, rather than sleeping past a short expiry.
    an_hour_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *_, **__: an_hour_ago)
    expired = await presign(s3, bucket, KEYS[0], expires_in=1)
    still_valid = await presign(s3, bucket, KEYS[0], expires_in=7200)
    monkeypatch.undo()

    # Same clock, same signer: a valid signature in the past is fine until it expires.
    status, _, _ = await fetch(http, still_valid)
    assert status == 200
    status, body, content_type = await fetch(http, expired)
    assert status == 403
    assert content_type == "application/xml"
    assert error_code(body) == "AccessDenied"
    assert b"<Message>Request has expired</Message>" in body


async def test_tampered_signature_is_refused(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    await seed_media(s3, bucket, KEYS)
    url = await presign(s3, bucket, KEYS[0])
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    other_key = url.replace(KEYS[0], KEYS[1])
    async with s3_client(s3.meta.endpoint_url, secret_access_key="wrong-secret") as wrong:  # noqa: S106
        wrong_secret = await presign(wrong, bucket, KEYS[0])

    for tampered in (with_query(url, **{"X-Amz-Signature": flipped}), other_key, wrong_secret):
        status, body, _ = await fetch(http, tampered)
        assert (status, error_code(body)) == (403, "SignatureDoesNotMatch"), tampered
    assert (await fetch(http, url))[0] == 200


async def test_malformed_query_auth_is_refused(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    await seed_media(s3, bucket, KEYS[:1])
    url = await presign(s3, bucket, KEYS[0])
    for changes, expected in [
        ({"X-Amz-Expires": "soon"}, (400, "AuthorizationQueryParametersError")),
        ({"X-Amz-Expires": "604801"}, (400, "AuthorizationQueryParametersError")),
        ({"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}, (400, "AuthorizationQueryParametersError")),
        ({"X-Amz-Credential": ACCESS_KEY_ID}, (400, "AuthorizationQueryParametersError")),
        ({"X-Amz-Date": ""}, (400, "AuthorizationQueryParametersError")),
    ]:
        status, body, _ = await fetch(http, with_query(url, **changes))
        assert (status, error_code(body)) == expected, changes
    # A signature that is not even UTF-8 is a wrong signature, not a server error.
    not_utf8 = re.sub("X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=%FF", url)
    status, body, _ = await fetch(http, not_utf8)
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


async def test_unknown_access_key_id_is_refused(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    await seed_media(s3, bucket, KEYS[:1])
    async with s3_client(s3.meta.endpoint_url, access_key_id="nobody") as stranger:
        url = await presign(stranger, bucket, KEYS[0])
    status, body, _ = await fetch(http, url)
    assert (status, error_code(body)) == (403, "InvalidAccessKeyId")


async def test_anonymous_get_is_refused(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    await seed_media(s3, bucket, KEYS[:1])
    status, body, _ = await fetch(http, f"{s3.meta.endpoint_url}/{bucket}/{KEYS[0]}")
    assert (status, error_code(body)) == (403, "AccessDenied")
    # The object is there all the same, for a signed client.
    head = await s3.head_object(Bucket=bucket, Key=KEYS[0])
    assert head["ContentLength"] > 0


async def test_presigned_head_is_checked_too(
    s3: S3Client, bucket: str, http: aiohttp.ClientSession
) -> None:
    await seed_media(s3, bucket, KEYS[:1])
    url = await s3.generate_presigned_url(
        "head_object", Params={"Bucket": bucket, "Key": KEYS[0]}, ExpiresIn=300
    )
    assert (await fetch(http, url, "HEAD"))[0] == 200
    # Signed for HEAD, not for GET: the method is part of the signature.
    assert (await fetch(http, url, "GET"))[0] == 403


def test_signature_matches_the_aws_documentation_example() -> None:
    # The worked example of "Authenticating Requests: Using Query Parameters (AWS Signature
    # Version 4)" in the S3 API reference: proof against the spec, independent of botocore.
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )

    def verify(now: datetime, path: str = "/test.txt") -> str | None:
        failure = verify_query_auth(
            method="GET",
            path=path,
            query_string=query,
            headers={"host": "examplebucket.s3.amazonaws.com"},
            credentials={"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
            now=now,
        )
        return None if failure is None else failure.code

    signed_at = datetime(2013, 5, 24, tzinfo=UTC)
    assert verify(signed_at + timedelta(seconds=86400)) is None
    assert verify(signed_at + timedelta(seconds=86401)) == "AccessDenied"
    assert verify(signed_at, path="/test.txt2") == "SignatureDoesNotMatch"


@pytest.mark.integration
async def test_module_serves_until_sigterm(http: aiohttp.ClientSession) -> None:
    bucket, key = "media", "dramas/9/ep001/index.m3u8"
    env = os.environ | {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtest.devstack.local_s3",
        "--port",
        "0",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("local S3 listening on http://127.0.0.1:"), line
        url = line.split()[4]
        async with s3_client(url) as client:
            assert await seed_media(client, bucket, [key]) == OBJECTS_PER_KEY
            presigned = await presign(client, bucket, key)
        assert (await fetch(http, presigned))[0] == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    output = line.encode() + stdout + stderr
    assert f"GET /{bucket}/{key} 200".encode() in stderr
    assert SECRET_ACCESS_KEY.encode() not in output
    assert b"X-Amz-Signature" not in output


async def test_every_method_is_refused_unsigned_or_signed_for_another(
    s3: S3Client, bucket: str, local_s3: LocalS3, http: aiohttp.ClientSession
) -> None:
    """Issue 19: the guard covers writes, deletes and bucket operations, not only reads."""
    await seed_media(s3, bucket, KEYS[:1])
    key = KEYS[0]
    get_url = await presign(s3, bucket, key)
    base = local_s3.url
    # Unsigned: objects, the bucket, the service, every method.
    for method, path in [
        ("PUT", f"/{bucket}/{key}"),
        ("DELETE", f"/{bucket}/{key}"),
        ("POST", f"/{bucket}/{key}?uploads"),
        ("PUT", f"/{bucket}-new"),
        ("DELETE", f"/{bucket}"),
        ("GET", f"/{bucket}"),
        ("GET", "/"),
    ]:
        status, body, _ = await fetch(http, base + path, method)
        assert (status, error_code(body)) == (403, "AccessDenied"), (method, path)
    # A URL signed for GET does not PUT or DELETE.
    for method in ("PUT", "DELETE"):
        status, body, _ = await fetch(http, get_url, method)
        assert (status, error_code(body)) == (403, "SignatureDoesNotMatch"), method
    # An SDK request signed with the wrong secret is refused too, a write included.
    async with s3_client(base, secret_access_key="wrong") as forged:  # noqa: S106 - a wrong key
        with pytest.raises(ClientError) as caught:
            await forged.put_object(Bucket=bucket, Key=key, Body=b"overwritten")
        assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        with pytest.raises(ClientError):
            await forged.delete_object(Bucket=bucket, Key=key)
    # Nothing changed: the object is still there, as seeded, for the right signature.
    status, body, _ = await fetch(http, get_url)
    assert status == 200
    assert body != b"overwritten"
