"""Rewriting an HLS media playlist so that a player can fetch every segment from a private bucket.

A playlist stored in S3 names its segments relatively (``seg000.ts``); a player resolves them
against the playlist's URL, and a pre-signed playlist URL's query string does not carry over, so
each segment would be fetched unsigned and refused. `sign_playlist` finds every URI of the
playlist (RFC 8216 section 4.1: each line that is not blank and not a tag, and the ``URI``
attribute of tags such as ``EXT-X-MAP`` and ``EXT-X-KEY``), resolves it against the playlist's
key, and replaces it with the pre-signed URL of that key; every other byte is kept.

A URI may only name an object under the playlist's own prefix (``dramas/1/ep001/`` for
``dramas/1/ep001/index.m3u8``): an absolute URL, an absolute path, a query or a ``..`` that climbs
out makes the whole playlist refused (`PlaylistError`), so a tampered or mistaken playlist can
never get another object of the bucket signed. Master playlists (``EXT-X-STREAM-INF``) name other
playlists, which would need the same rewriting in turn: they are refused too.

Hand-written rather than with the ``m3u8`` package: its ``dumps`` re-serialises the whole
playlist from its model (dropping tags it does not know), where this only touches URIs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote

from broker import HandlerError

__all__ = ["MAX_PLAYLIST_BYTES", "PlaylistError", "playlist_uris", "sign_playlist"]

MAX_PLAYLIST_BYTES = 1024 * 1024
_URI_ATTRIBUTE = re.compile(r'URI="([^"]*)"')
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class PlaylistError(HandlerError):
    """The object is not a media playlist this service will sign."""

    error_type = "bad_playlist"


def validate_key(key: str) -> None:
    """A playlist key: relative, ``.m3u8``, no ``.`` or ``..`` component."""
    parts = key.split("/")
    if not key.endswith(".m3u8") or key.startswith("/") or {".", "..", ""} & set(parts):
        raise PlaylistError(f"not a playlist key: {key!r}")


def _resolve(prefix: str, uri: str) -> str:
    if _SCHEME.match(uri) or uri.startswith("/") or "?" in uri or "#" in uri:
        raise PlaylistError(f"URI {uri!r} is not a path relative to the playlist")
    key = posixpath.normpath(posixpath.join(prefix, unquote(uri)))
    if not key.startswith(prefix + "/"):
        raise PlaylistError(f"URI {uri!r} names an object outside {prefix}/")
    return key


def playlist_uris(playlist_key: str, text: str) -> list[tuple[str, str]]:
    """Every ``(uri, key)`` of the playlist in order of appearance; raises `PlaylistError`."""
    validate_key(playlist_key)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise PlaylistError(f"{playlist_key} is not an HLS playlist (no #EXTM3U)")
    prefix = posixpath.dirname(playlist_key)
    found: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(("#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF")):
            raise PlaylistError(f"{playlist_key} is a master playlist: only media playlists")
        if line.startswith("#EXT"):
            found += [(uri, _resolve(prefix, uri)) for uri in _URI_ATTRIBUTE.findall(line)]
        elif line and not line.startswith("#"):
            found.append((line, _resolve(prefix, line)))
    return found


async def sign_playlist(
    playlist_key: str,
    text: str,
    sign: Callable[[Sequence[str]], Awaitable[list[str]]],
) -> tuple[str, int]:
    """The playlist with each URI replaced by ``sign``'s URL for its key, and the URI count.

    ``sign`` gets the distinct keys once each, in order of appearance.
    """
    uris = playlist_uris(playlist_key, text)
    keys = list(dict.fromkeys(key for _, key in uris))
    urls = dict(zip(keys, await sign(keys), strict=True))
    by_uri = {uri: urls[key] for uri, key in uris}

    def attribute(match: re.Match[str]) -> str:
        return f'URI="{by_uri[match.group(1)]}"'

    out = []
    for raw in text.splitlines(keepends=True):
        line = raw.strip()
        if line.startswith("#EXT"):
            out.append(_URI_ATTRIBUTE.sub(attribute, raw))
        elif line and not line.startswith("#"):
            out.append(raw.replace(line, by_uri[line], 1))
        else:
            out.append(raw)
    return "".join(out), len(uris)
