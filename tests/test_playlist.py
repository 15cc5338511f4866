"""Playable media and the signed playlist (``stream.playlist``), read the way a player reads them.

The media is encoded by ffmpeg at seed time and must be H.264 + AAC that a browser decodes; the
playlist stream-service hands out must name every segment by a pre-signed URL that the embedded
S3 serves (signature and expiry checked as AWS checks them), and must never get an object
outside the episode's prefix signed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig
from yarl import URL

from broker.rpc import BadRequest, NotFound
from loadtest.devstack.config import MEDIA_CACHE
from loadtest.devstack.local_s3 import LocalS3
from stream.contract import SignPlaylist
from stream.media import DramaMedia, encode_hls, ffmpeg_path, place
from stream.playlist import PlaylistError, playlist_uris, sign_playlist
from stream.store import seed_media
from stream.worker import Procedures

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"  # noqa: S105
KEY = "dramas/1/ep001/index.m3u8"
OTHER_KEY = "dramas/1/ep002/index.m3u8"


def ffmpeg() -> str:
    found = ffmpeg_path()
    # Not a skip: seeding playable media is the feature; .ci/run installs Debian's ffmpeg.
    assert found is not None, "ffmpeg is needed (Debian package ffmpeg; .ci/run installs it)"
    return found


@pytest.fixture
def local_s3() -> Iterator[LocalS3]:
    with LocalS3(credentials={ACCESS_KEY_ID: SECRET_ACCESS_KEY}) as server:
        yield server


@pytest.fixture
async def s3(local_s3: LocalS3) -> AsyncIterator[S3Client]:
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=local_s3.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=AioConfig(s3={"addressing_style": "path"}, signature_version="s3v4"),
    ) as client:
        yield client


@pytest.fixture
def bucket() -> str:
    return f"media-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def seeded(s3: S3Client, bucket: str) -> str:
    """The bucket, with ffmpeg's media for two episodes of drama 1."""
    episodes = {KEY: (1, "The Lantern Keeper's Daughter"), OTHER_KEY: (1, "The Lantern")}
    async with DramaMedia(episodes, ffmpeg=ffmpeg(), cache=MEDIA_CACHE) as media:
        assert await seed_media(s3, bucket, list(episodes), sample=media.objects) == 8
    return bucket


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with http.get(URL(url, encoded=True)) as response:
        return response.status, await response.read(), response.content_type


def segment_urls(body: str) -> list[str]:
    return [line for line in body.splitlines() if line and not line.startswith("#")]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def probe(path: Path) -> list[dict[str, str]]:
    ffprobe = shutil.which("ffprobe")
    assert ffprobe is not None, "ffprobe comes with Debian's ffmpeg"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    streams: list[dict[str, str]] = json.loads(out)["streams"]
    return streams


@pytest.mark.integration
async def test_encoded_media_is_h264_and_aac_in_two_second_segments(tmp_path: Path) -> None:
    encoded = await encode_hls("7. A title with 'quotes', colons: and %percent", ffmpeg=ffmpeg())
    assert sorted(encoded) == ["index.m3u8", "seg000.ts", "seg001.ts", "seg002.ts"]
    playlist = encoded["index.m3u8"].decode()
    assert playlist.count("#EXTINF:2.0") == 3
    assert "#EXT-X-ENDLIST" in playlist
    segment = tmp_path / "seg001.ts"
    segment.write_bytes(encoded["seg001.ts"])
    codecs = {(s["codec_type"], s["codec_name"], s.get("profile")) for s in probe(segment)}
    assert codecs == {("video", "h264", "Main"), ("audio", "aac", "LC")}
    # Placed under a key, the segments sit beside the playlist.
    assert sorted(place(KEY, encoded)) == [
        KEY,
        "dramas/1/ep001/seg000.ts",
        "dramas/1/ep001/seg001.ts",
        "dramas/1/ep001/seg002.ts",
    ]


@pytest.mark.integration
async def test_every_segment_url_of_a_signed_playlist_is_served(
    s3: S3Client, seeded: str, http: aiohttp.ClientSession
) -> None:
    procedures = Procedures(s3, seeded, ttl_s=300)
    before = datetime.now(UTC).replace(microsecond=0)
    signed = await procedures.playlist(SignPlaylist(key=KEY))
    assert signed.key == KEY
    assert signed.segments == 3
    assert before + timedelta(seconds=300) <= datetime.fromisoformat(signed.expires_at)
    urls = segment_urls(signed.body)
    assert len(urls) == 3
    # Every tag is kept as it was; only the URIs changed.
    original = (await (await s3.get_object(Bucket=seeded, Key=KEY))["Body"].read()).decode()
    assert [line for line in signed.body.splitlines() if line.startswith("#")] == [
        line for line in original.splitlines() if line.startswith("#")
    ]
    for index, url in enumerate(urls):
        parts = urlsplit(url)
        assert parts.path == f"/{seeded}/dramas/1/ep001/seg{index:03d}.ts"
        assert "X-Amz-Signature=" in parts.query
        status, body, content_type = await fetch(http, url)
        assert (status, content_type) == (200, "video/mp2t")
        assert body[::188] == b"\x47" * (len(body) // 188)


@pytest.mark.integration
async def test_altered_segment_urls_are_refused(
    s3: S3Client, seeded: str, http: aiohttp.ClientSession
) -> None:
    signed = await Procedures(s3, seeded, ttl_s=300).playlist(SignPlaylist(key=KEY))
    url = segment_urls(signed.body)[0]
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other_episode = url.replace("/ep001/", "/ep002/")
    longer = with_query(url, **{"X-Amz-Expires": "604800"})
    for altered in (with_query(url, **{"X-Amz-Signature": flipped}), other_episode, longer):
        status, body, _ = await fetch(http, altered)
        assert status == 403, altered
        assert b"SignatureDoesNotMatch" in body
    # The same object without any signature: anonymous reads are refused too.
    status, _, _ = await fetch(http, url.split("?", 1)[0])
    assert status == 403


@pytest.mark.integration
async def test_expired_segment_urls_are_refused(
    s3: S3Client, seeded: str, http: aiohttp.ClientSession
) -> None:
    # Two seconds, not one: X-Amz-Date keeps whole seconds, so one second signed late in a
    # second would leave the first fetch a tenth of one (test_e2e's expired-URL test failed so).
    signed = await Procedures(s3, seeded, ttl_s=2).playlist(SignPlaylist(key=KEY))
    url = segment_urls(signed.body)[-1]
    status, _, _ = await fetch(http, url)
    assert status == 200
    # Waiting out the lifetime is the behaviour under test, not synchronisation.
    expires_at = datetime.fromisoformat(signed.expires_at)
    await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 1.1)
    status, body, _ = await fetch(http, url)
    assert status == 403
    assert b"Request has expired" in body


@pytest.mark.parametrize(
    "uri",
    [
        "../ep002/seg000.ts",
        "sub/../../ep002/seg000.ts",
        "/dramas/1/ep002/seg000.ts",
        "http://evil.example/seg000.ts",
        "seg000.ts?X-Amz-Signature=forged",
        "%2e%2e/ep002/seg000.ts",
    ],
)
@pytest.mark.integration
async def test_a_playlist_naming_another_prefix_gets_nothing_signed(
    s3: S3Client, seeded: str, uri: str
) -> None:
    tampered = f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg000.ts\n#EXTINF:2.0,\n{uri}\n"
    await s3.put_object(Bucket=seeded, Key=KEY, Body=tampered.encode())
    signed: list[str] = []

    async def sign(keys: Sequence[str]) -> list[str]:
        signed.extend(keys)
        return list(keys)

    with pytest.raises(PlaylistError) as refused:
        await sign_playlist(KEY, tampered, sign)
    assert refused.value.error_type == "bad_playlist"
    assert signed == []
    with pytest.raises(PlaylistError):
        await Procedures(s3, seeded, ttl_s=300).playlist(SignPlaylist(key=KEY))


async def test_init_segments_and_keys_are_signed_and_master_playlists_refused() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="keys/k1.bin",IV=0x1\n'
        "#EXTINF:2.0,\n"
        "seg%20000.m4s\n"
        "#EXT-X-ENDLIST\n"
    )
    assert playlist_uris(KEY, text) == [
        ("init.mp4", "dramas/1/ep001/init.mp4"),
        ("keys/k1.bin", "dramas/1/ep001/keys/k1.bin"),
        ("seg%20000.m4s", "dramas/1/ep001/seg 000.m4s"),
    ]

    async def sign(keys: Sequence[str]) -> list[str]:
        return [f"https://signed/{key}" for key in keys]

    body, count = await sign_playlist(KEY, text, sign)
    assert count == 3
    assert '#EXT-X-MAP:URI="https://signed/dramas/1/ep001/init.mp4"\n' in body
    assert 'URI="https://signed/dramas/1/ep001/keys/k1.bin",IV=0x1' in body
    assert "\nhttps://signed/dramas/1/ep001/seg 000.m4s\n" in body
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nlow/index.m3u8\n"
    with pytest.raises(PlaylistError, match="master playlist"):
        playlist_uris(KEY, master)


@pytest.mark.integration
async def test_missing_and_malformed_playlist_keys(s3: S3Client, seeded: str) -> None:
    procedures = Procedures(s3, seeded, ttl_s=300)
    with pytest.raises(NotFound):
        await procedures.playlist(SignPlaylist(key="dramas/9/ep001/index.m3u8"))
    for key in ("/dramas/1/ep001/index.m3u8", "dramas/1/../2/ep001/index.m3u8", "dramas/1/x.ts"):
        with pytest.raises(BadRequest):
            await procedures.playlist(SignPlaylist(key=key))
