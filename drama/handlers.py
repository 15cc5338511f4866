"""The HTTP API: a drama with its episodes and their pre-signed streams, and the catalogue.

``GET /dramas/{id}`` reads the drama, then calls ``episode.list`` and, with the media keys it
returns, ``stream.presign``: two RPCs in sequence. ``GET /dramas`` does the same once per page
(batched: never one call per drama), returning each drama with its first episode ready to play.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web
from opentelemetry.instrumentation.utils import suppress_instrumentation

from broker import AmqpRpcClient, RpcClient, RpcNotFound, RpcRemoteError, RpcUnavailable
from episode.contract import LIST, DramaEpisodes, Episode, EpisodeList, ListEpisodes
from episode.contract import QUEUE as EPISODE_QUEUE
from stream.contract import (
    PLAYLIST,
    PRESIGN,
    Presign,
    PresignedUrl,
    PresignedUrls,
    SignedPlaylist,
    SignPlaylist,
)
from stream.contract import QUEUE as STREAM_QUEUE

from .admission import remaining
from .problems import DramaNotFound, InvalidParameter
from .store import Drama, DramaStore
from .timing import db_time

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_ID = 2**63 - 1  # the database's BIGINT; larger ids cannot exist

STORE = web.AppKey("store", DramaStore)
RPC = web.AppKey("rpc", RpcClient)  # the transport (its ping is readiness)
CALLS = web.AppKey("calls", RpcClient)  # the same, behind the per-method bulkhead and breaker
TIMEOUT = web.AppKey("rpc_timeout", float)
# Pre-signed URLs are credentials for a while: no cache (shared or private) may keep them.
NO_STORE = {"Cache-Control": "no-store"}


class Stream(msgspec.Struct, frozen=True):
    url: str  # the playlist object, pre-signed; its segments are not (use ``playlist``)
    expires_at: str
    playlist: str  # this API's path of the playlist with every segment pre-signed


class EpisodeOut(msgspec.Struct, frozen=True):
    number: int
    title: str
    duration_s: int
    stream: Stream


class DramaOut(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    title: str
    synopsis: str
    year: int
    country: str
    genres: list[str]
    episode_count: int


class DramaDetail(DramaOut, frozen=True, kw_only=True):
    episodes: list[EpisodeOut]


class DramaSummary(DramaOut, frozen=True, kw_only=True):
    first_episode: EpisodeOut | None


class DramaPage(msgspec.Struct, frozen=True):
    items: list[DramaSummary]
    next_cursor: str | None


_encoder = msgspec.json.Encoder()
_DIGITS = re.compile(r"[0-9]{1,19}")

# Exactly the cursors this API hands out: unpadded base64url of "v1:" and 1-18 digits (every id
# below 10^18). Each 3 ASCII digits encode to 4 characters from these classes, 1 or 2 digits
# left over to 2 or 3. The OpenAPI document states this pattern, and the handler checks it, so
# that what the document calls valid is what the server accepts (schemathesis checks both ways).
_3 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_1, _2 = "(?:[MN][AQgw]|O[AQ])", "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
CURSOR_PATTERN = f"^(?:djE6(?:{_3}){{0,5}}(?:{_3}|{_1}|{_2}))?$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _json(value: msgspec.Struct) -> web.Response:
    return web.Response(
        body=_encoder.encode(value), content_type="application/json", headers=NO_STORE
    )


def parse_id(raw: str, name: str = "id") -> int:
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_ID:
        raise InvalidParameter(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).rstrip(b"=").decode()


def decode_cursor(raw: str | None) -> int | None:
    """The id the next page starts after; the cursor is opaque to clients, versioned for us."""
    if not raw:  # absent or empty (?cursor=): the first page
        return None
    if not _CURSOR.match(raw):
        raise InvalidParameter("cursor is not one this API handed out")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    version, _, last = text.partition(":")
    if version != "v1" or not _DIGITS.fullmatch(last) or int(last) > MAX_ID:
        raise InvalidParameter("cursor is not one this API handed out")
    return int(last)


def _check_count(method: str, got: int, asked: int) -> None:
    """A reply must answer each item asked, in order; anything else is the worker's fault."""
    if got != asked:
        raise RpcRemoteError(method, "bad_reply", f"{got} items for {asked} asked")


async def _streams(request: web.Request, keys: list[str]) -> list[PresignedUrl]:
    if not keys:
        return []
    reply = await request.app[CALLS].call(
        PRESIGN, Presign(keys=keys), PresignedUrls, timeout=remaining(request, request.app[TIMEOUT])
    )
    _check_count(PRESIGN, len(reply.urls), len(keys))
    return reply.urls


async def _episodes(
    request: web.Request, drama_ids: list[int], per_drama: int | None
) -> Sequence[DramaEpisodes]:
    reply = await request.app[CALLS].call(
        LIST,
        ListEpisodes(drama_ids=drama_ids, per_drama=per_drama),
        EpisodeList,
        timeout=remaining(request, request.app[TIMEOUT]),
    )
    _check_count(LIST, len(reply.dramas), len(drama_ids))
    return reply.dramas


async def get_drama(request: web.Request) -> web.Response:
    drama_id = parse_id(request.match_info["id"])
    async with db_time(request):
        drama = await request.app[STORE].get(drama_id)
    if drama is None:
        raise DramaNotFound(f"no drama with id {drama_id}")
    (listing,) = await _episodes(request, [drama_id], None)
    urls = await _streams(request, [e.media_key for e in listing.episodes])
    episodes = [_episode(drama_id, e, u) for e, u in zip(listing.episodes, urls, strict=True)]
    return _json(DramaDetail(**_fields(drama, listing.total), episodes=episodes))


PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"


def playlist_path(drama_id: int, number: int) -> str:
    return f"/dramas/{drama_id}/episodes/{number}/playlist.m3u8"


async def get_playlist(request: web.Request) -> web.Response:
    """An episode's HLS playlist, every segment pre-signed by stream-service (``stream.playlist``).

    Two RPCs in sequence, as for a drama: ``episode.list`` finds the episode's media key (the
    key never leaves the backend), ``stream.playlist`` reads and signs that playlist.
    """
    drama_id = parse_id(request.match_info["id"])
    number = parse_id(request.match_info["number"], "episode number")
    (listing,) = await _episodes(request, [drama_id], None)
    episode = next((e for e in listing.episodes if e.number == number), None)
    if episode is None:
        raise DramaNotFound(f"drama {drama_id} has no episode {number}")
    reply = await request.app[CALLS].call(
        PLAYLIST,
        SignPlaylist(key=episode.media_key),
        SignedPlaylist,
        timeout=remaining(request, request.app[TIMEOUT]),
    )
    # Its URLs expire: a cache must not hand the playlist out after they have.
    return web.Response(
        text=reply.body,
        content_type=PLAYLIST_CONTENT_TYPE,
        headers={"Cache-Control": "private, no-store"},
    )


async def list_dramas(request: web.Request) -> web.Response:
    limit = parse_limit(request.query.get("limit"))
    after = decode_cursor(request.query.get("cursor"))
    # One row more than asked tells whether another page follows.
    async with db_time(request):
        dramas = await request.app[STORE].page(after, limit + 1)
    more = len(dramas) > limit
    dramas = dramas[:limit]
    items: list[DramaSummary] = []
    if dramas:
        try:
            listings = await _episodes(request, [d.id for d in dramas], 1)
            keys = [listing.episodes[0].media_key for listing in listings if listing.episodes]
            urls = iter(await _streams(request, keys))
        except RpcNotFound as exc:
            # A page asks for nothing that may be missing: a worker saying so is at fault.
            raise RpcRemoteError(exc.method, exc.error_type, exc.remote_message) from exc
        for drama, listing in zip(dramas, listings, strict=True):
            first = None
            if listing.episodes:
                first = _episode(drama.id, listing.episodes[0], next(urls))
            items.append(DramaSummary(**_fields(drama, listing.total), first_episode=first))
    next_cursor = encode_cursor(dramas[-1].id) if more else None
    return _json(DramaPage(items=items, next_cursor=next_cursor))


def _episode(drama_id: int, episode: Episode, url: PresignedUrl) -> EpisodeOut:
    stream = Stream(url.url, url.expires_at, playlist_path(drama_id, episode.number))
    return EpisodeOut(episode.number, episode.title, episode.duration_s, stream)


def _fields(drama: Drama, total: int) -> dict[str, Any]:
    return {
        "id": drama.id,
        "title": drama.title,
        "synopsis": drama.synopsis,
        "year": drama.year,
        "country": drama.country,
        "genres": list(drama.genres),
        "episode_count": total,
    }


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    # Probes are not traced (the server span is excluded), and neither is their query.
    with suppress_instrumentation():
        await request.app[STORE].ping()
    rpc = request.app[RPC]
    await rpc.ping()
    if isinstance(rpc, AmqpRpcClient):
        # A worker queue nobody consumes: every request would wait for its timeout.
        for method, queue in ((LIST, EPISODE_QUEUE), (PRESIGN, STREAM_QUEUE)):
            if await rpc.consumers(queue) == 0:
                raise RpcUnavailable(method, f"no consumer on queue {queue}")
    return web.json_response({"status": "ready"})
