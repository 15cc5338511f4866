"""stream.presign: the fast presigner's URLs are botocore's, byte for byte, and S3 accepts them.

botocore's clock is frozen the way its own tests freeze it (``botocore.auth.get_current_datetime``),
and the same instant is passed to our signer as ``now``; then every byte of the two URLs must
agree. The end-to-end half fetches objects through loadtest/devstack/local_s3.py, whose guard
recomputes the SigV4 signature and checks the expiry as S3 does.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import botocore.session
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from yarl import URL

from loadtest.bench.presign import main as bench_presign
from loadtest.devstack.local_s3 import LocalS3
from stream.contract import Presign
from stream.presign import (
    PROBE_KEY,
    BotocorePresigner,
    Presigner,
    SigV4Presigner,
    Target,
    presigner_for,
    signing_hmac,
)
from stream.worker import Procedures

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

ACCESS_KEY_ID = "AKIDPRESIGNTEST"
SECRET_ACCESS_KEY = "presign/test+secret=="  # noqa: S105 - local test key, signs nothing real
TOKEN = "IQoJb3JpZ2luX2Vj/session+token==with~all%chars"  # noqa: S105 - as above
BUCKET = "drama-media"
# Just before midnight UTC: the next second has another date, so another scope and signing key.
FROZEN = datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC)
KEYS = [
    "dramas/1/ep001/index.m3u8",
    "dramas/Café/épisode 1/index.m3u8",
    "dramas/x+y=z/seg 000.ts",
    "dramas/tilde~and%25percent/a%b.ts",
    "dramas/日本語/ドラマ 第1話.m3u8",
    "dramas//double//slash/",
    "dramas/reserved?#&;,:@!$'()*[]/seg.ts",
    "a",
]
TTLS = [1, 900, 3600, 7 * 24 * 3600]


def botocore_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    # botocore wants naive UTC from this function.
    naive = now.astimezone(UTC).replace(tzinfo=None)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *_, **__: naive)


async def botocore_url(client: S3Client, key: str, ttl_s: int, bucket: str = BUCKET) -> str:
    return await client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_s
    )


# region, endpoint_url, addressing style, extra s3 config
CLIENTS = {
    "aws-us-east-1-virtual": ("us-east-1", None, "virtual", {}),
    "aws-ap-northeast-2-virtual": ("ap-northeast-2", None, "virtual", {}),
    "aws-eu-west-1-auto": ("eu-west-1", None, "auto", {}),
    "aws-accelerate": ("eu-west-1", None, "virtual", {"use_accelerate_endpoint": True}),
    "aws-dualstack": ("eu-west-1", None, "virtual", {"use_dualstack_endpoint": True}),
    "minio-path": ("us-east-1", "http://127.0.0.1:9000", "path", {}),
    "minio-default-port": ("eu-west-1", "https://MinIO.Example:443", "path", {}),
    "ipv6-path": ("ap-northeast-2", "http://[::1]:9000", "path", {}),
}


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "session-token"])
@pytest.mark.parametrize("client_name", list(CLIENTS))
async def test_urls_equal_botocores_byte_for_byte(
    client_name: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    region, endpoint_url, style, extra = CLIENTS[client_name]
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": style, **extra})
    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_session_token=token,
    )
    async with session.client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        for now in (FROZEN, FROZEN + timedelta(seconds=1)):
            botocore_clock(monkeypatch, now)
            for ttl_s in TTLS:
                presigner = await presigner_for(client, BUCKET, ttl_s)
                assert isinstance(presigner, SigV4Presigner)
                ours = await presigner.urls(KEYS, now)
                expected = [await botocore_url(client, key, ttl_s) for key in KEYS]
                assert ours == expected
                query = urlsplit(ours[0]).query
                assert f"X-Amz-Expires={ttl_s}&" in query
                assert f"%2F{now:%Y%m%d}%2F{region}%2Fs3%2F" in query
                assert ("X-Amz-Security-Token=" in query) == (token is not None)


@pytest.mark.parametrize(
    ("endpoint_url", "origin_and_prefix"),
    [
        (None, "https://drama-media.s3.eu-west-1.amazonaws.com/"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000/drama-media/"),
    ],
)
async def test_addressing_is_the_clients(
    endpoint_url: str | None, origin_and_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What open_s3 configures: virtual-hosted on AWS, path style with a custom endpoint.
    style = "path" if endpoint_url else "virtual"
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": style})
    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    )
    async with session.client(
        "s3", region_name="eu-west-1", endpoint_url=endpoint_url, config=config
    ) as client:
        presigner = await presigner_for(client, BUCKET, 60)
        [url] = await presigner.urls(["dramas/1/a b.ts"], FROZEN)
    assert url.startswith(f"{origin_and_prefix}dramas/1/a%20b.ts?X-Amz-Algorithm=AWS4-HMAC-SHA256&")


def test_signature_matches_the_aws_documentation_example() -> None:
    # "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", S3 API
    # reference: independent of botocore.
    target = Target(
        origin="https://examplebucket.s3.amazonaws.com",
        path_prefix="/",
        host="examplebucket.s3.amazonaws.com",
        region="us-east-1",
        service="s3",
    )
    credentials = ReadOnlyCredentials(
        "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None
    )
    presigner = SigV4Presigner(target, NoRefresh(credentials), 86400)
    [url] = presigner.sign(["test.txt"], credentials, datetime(2013, 5, 24, tzinfo=UTC))
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )


class NoRefresh:
    def __init__(self, credentials: ReadOnlyCredentials) -> None:
        self._credentials = credentials

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self._credentials


@pytest.fixture(scope="module")
def sync_client() -> Iterator[Any]:
    # botocore's synchronous client: hypothesis runs plain functions, and the signer is the same.
    client = botocore.session.get_session().create_client(
        "s3",
        region_name="sa-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_session_token=TOKEN,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    yield client
    client.close()


# Any text S3 accepts as a key that stream.presign accepts: not empty, not starting with '/',
# valid UTF-8 (no lone surrogates).
s3_keys = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60
).filter(lambda key: not key.startswith("/"))


@settings(max_examples=300, deadline=None)
@given(key=s3_keys)
def test_any_key_is_quoted_as_botocore_quotes_it(sync_client: Any, key: str) -> None:
    def presign(key: str) -> str:
        url: str = sync_client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=300
        )
        return url

    naive = FROZEN.replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=naive):
        target = Target.from_presigned(presign(PROBE_KEY), PROBE_KEY)
        expected = presign(key)
    credentials = ReadOnlyCredentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, TOKEN)
    presigner = SigV4Presigner(target, NoRefresh(credentials), 300)
    assert presigner.sign([key], credentials, FROZEN) == [expected]


def test_signing_hmac_is_derived_once_a_day() -> None:
    target = Target("https://b.s3.amazonaws.com", "/", "b.s3.amazonaws.com", "us-east-1", "s3")
    credentials = ReadOnlyCredentials(ACCESS_KEY_ID, f"{uuid.uuid4()}", None)
    presigner = SigV4Presigner(target, NoRefresh(credentials), 60)
    before = signing_hmac.cache_info().misses
    for seconds in range(3):
        presigner.sign(KEYS, credentials, FROZEN - timedelta(seconds=seconds))
    assert signing_hmac.cache_info().misses == before + 1
    presigner.sign(KEYS, credentials, FROZEN + timedelta(seconds=1))  # a new day
    assert signing_hmac.cache_info().misses == before + 2


async def test_refreshable_credentials_are_refreshed_before_they_expire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As IRSA's web identity credentials are: refreshable, with a session token and an expiry.
    clock = [FROZEN]
    issued: list[int] = []

    async def refresh() -> dict[str, str]:
        n = len(issued) + 1
        issued.append(n)
        return {
            "access_key": f"ASIAROLE{n}",
            "secret_key": f"role-secret-{n}",
            "token": f"role-token-{n}",
            "expiry_time": (clock[0] + timedelta(hours=1)).isoformat(),
        }

    credentials = AioRefreshableCredentials.create_from_metadata(
        await refresh(), refresh, "assume-role-with-web-identity"
    )
    # The clock botocore consults for the refresh windows, and the session's credentials as the
    # web identity provider would have set them.
    credentials._time_fetcher = lambda: clock[0]  # type: ignore[attr-defined]
    botocore_session = AioSession()
    botocore_session._credentials = credentials  # type: ignore[attr-defined]
    session = aioboto3.Session(botocore_session=botocore_session)
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "virtual"})
    async with session.client("s3", region_name="eu-west-1", config=config) as client:
        botocore_clock(monkeypatch, clock[0])
        presigner = await presigner_for(client, BUCKET, 600)
        [first] = await presigner.urls(KEYS[:1], clock[0])
        assert "ASIAROLE1%2F" in first
        assert "X-Amz-Security-Token=role-token-1&" in first

        # Inside botocore's mandatory refresh window (10 minutes before expiry).
        clock[0] += timedelta(minutes=55)
        botocore_clock(monkeypatch, clock[0])
        [second] = await presigner.urls(KEYS[:1], clock[0])
        assert second == await botocore_url(client, KEYS[0], 600)
    assert issued == [1, 2]
    assert "ASIAROLE2%2F" in second
    assert "X-Amz-Security-Token=role-token-2&" in second


async def test_sigv2_falls_back_to_botocore(caplog: pytest.LogCaptureFixture) -> None:
    config = AioConfig(signature_version="s3")
    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    )
    caplog.set_level(logging.WARNING, logger="stream.presign")
    async with session.client("s3", region_name="us-east-1", config=config) as client:
        presigner = await presigner_for(client, BUCKET, 60)
        [url] = await presigner.urls(KEYS[:1], datetime.now(UTC))
    assert isinstance(presigner, BotocorePresigner)
    assert "AWSAccessKeyId=" in url
    assert "Signature=" in url
    assert caplog.messages == [
        "pre-signing with botocore: its URLs are not plain SigV4 "
        "(not AWS4-HMAC-SHA256 query authentication)"
    ]
    assert SECRET_ACCESS_KEY not in caplog.text


# --- end to end, against the local S3 endpoint and its SigV4 + expiry guard ---


@pytest.fixture
def local_s3() -> Iterator[LocalS3]:
    with LocalS3(credentials={ACCESS_KEY_ID: SECRET_ACCESS_KEY}) as server:
        yield server


@pytest.fixture
async def s3(local_s3: LocalS3) -> AsyncIterator[S3Client]:
    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY
    )
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
    async with session.client(
        "s3", endpoint_url=local_s3.url, region_name="us-east-1", config=config
    ) as client:
        yield client


@pytest.fixture
async def bucket(s3: S3Client) -> str:
    # moto's store is global to the process: a bucket of its own keeps each test apart.
    name = f"media-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    for key in KEYS:
        await s3.put_object(Bucket=name, Key=key, Body=f"body of {key}".encode())
    return name


async def fetch(url: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        # encoded=True: the URL must reach the server exactly as signed, not re-quoted by yarl.
        http.get(URL(url, encoded=True)) as response,
    ):
        return response.status, await response.read()


async def test_procedures_urls_fetch_the_objects(s3: S3Client, bucket: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    procedures = Procedures(s3, bucket, 300, tracer_provider=provider)

    reply = await procedures.presign(Presign(keys=KEYS))

    assert [u.key for u in reply.urls] == KEYS
    for url in reply.urls:
        assert await fetch(url.url) == (200, f"body of {url.key}".encode()), url.key
    [span] = exporter.get_finished_spans()
    assert span.name == "S3 presign"
    assert dict(span.attributes or {}) == {
        "aws.s3.bucket": bucket,
        "rpc.method": "stream.presign",
        "drama_streaming.presign.keys": len(KEYS),
        "drama_streaming.presign.signer": "sigv4",
    }
    expires_at = datetime.fromisoformat(reply.urls[0].expires_at)
    assert timedelta(seconds=298) < expires_at - datetime.now(UTC) <= timedelta(seconds=300)


async def test_tampered_urls_are_refused(s3: S3Client, bucket: str) -> None:
    presigner = await presigner_for(s3, bucket, 300)
    assert isinstance(presigner, SigV4Presigner)
    url, other = await presigner.urls(KEYS[:2], datetime.now(UTC))
    signature = url[-64:]
    tampered = [
        url[:-1] + ("0" if url[-1] != "0" else "1"),  # the signature
        url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"),  # a longer life
        other[: -len(signature)] + signature,  # another key's signature
        url.replace(KEYS[0], KEYS[0].upper()),  # another key
    ]
    for bad in tampered:
        status, body = await fetch(bad)
        assert (status, b"<Code>SignatureDoesNotMatch</Code>" in body) == (403, True), bad
    assert (await fetch(url))[0] == 200


async def test_expired_url_is_refused(s3: S3Client, bucket: str) -> None:
    presigner: Presigner = await presigner_for(s3, bucket, 3600)
    now = datetime.now(UTC)
    [expired] = await presigner.urls(KEYS[:1], now - timedelta(seconds=3601))
    [valid] = await presigner.urls(KEYS[:1], now - timedelta(seconds=3500))
    status, body = await fetch(expired)
    assert status == 403
    assert b"<Message>Request has expired</Message>" in body
    assert (await fetch(valid))[0] == 200


def test_bench_presign_prints_medians(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_presign(["--rounds", "1", "--keys", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["botocore", "µs", "sigv4", "µs", "ratio"]
    assert [line.split()[:2] for line in lines[1:3]] == [["1", "URL"], ["handler,", "3"]]
    assert lines[-1] == "(CPU time, medians of 1 alternating rounds)"


def expires_s(url: str) -> int:
    params = dict(pair.partition("=")[::2] for pair in urlsplit(url).query.split("&"))
    return int(params["X-Amz-Expires"])


async def test_urls_expire_with_the_credentials_that_signed_them() -> None:
    """IRSA-like credentials with 20 minutes left (outside botocore's refresh windows, so not
    renewed): a URL promised for an hour is signed, and announced, for those 20 minutes only;
    the botocore fallback clamps alike."""
    expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=20)

    async def refresh() -> dict[str, str]:
        return {
            "access_key": "ASIAROLE1",
            "secret_key": "role-secret-1",
            "token": "role-token-1",
            "expiry_time": expiry.isoformat(),
        }

    credentials = AioRefreshableCredentials.create_from_metadata(
        await refresh(), refresh, "assume-role-with-web-identity"
    )
    botocore_session = AioSession()
    botocore_session._credentials = credentials  # type: ignore[attr-defined]
    session = aioboto3.Session(botocore_session=botocore_session)
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "virtual"})
    async with session.client("s3", region_name="eu-west-1", config=config) as client:
        procedures = Procedures(client, BUCKET, 3600)
        before = datetime.now(UTC)
        reply = await procedures.presign(Presign(keys=KEYS[:2]))
        assert (await procedures.presigner()).name == "sigv4"
        # What the credentials had left when signing began (making the client above can take
        # seconds on a busy machine: measured from here, not from when they were made).
        left = (expiry - before).total_seconds()
        for url in reply.urls:
            expires_at = datetime.fromisoformat(url.expires_at)
            assert expiry - timedelta(seconds=2) <= expires_at <= expiry
            assert before + timedelta(seconds=expires_s(url.url)) <= expiry
            assert left - 3 < expires_s(url.url) <= 1200

        fallback = BotocorePresigner(client, BUCKET, 3600)
        now = datetime.now(UTC)
        [fallback_url] = await fallback.urls(KEYS[:1], now)
        assert expires_s(fallback_url) == fallback.ttl_at(now) <= 1200


async def test_static_credentials_keep_the_configured_ttl(s3: S3Client, bucket: str) -> None:
    presigner = await presigner_for(s3, bucket, 3600)
    now = datetime.now(UTC)
    [url] = await presigner.urls(KEYS[:1], now)
    assert expires_s(url) == presigner.ttl_at(now) == 3600
