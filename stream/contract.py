"""The public contract of stream-service: the only module other services may import.

Method ``stream.presign``: media keys in, pre-signed S3 GET URLs out, in the same order.
Method ``stream.playlist``: a playlist's key in, the playlist out with every segment pre-signed.
"""

from __future__ import annotations

import msgspec

QUEUE = "rpc.stream"
PRESIGN = "stream.presign"

MAX_KEYS = 2000


class Presign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Request of ``stream.presign``."""

    keys: list[str]


class PresignedUrl(msgspec.Struct, frozen=True):
    key: str
    url: str
    expires_at: str  # RFC 3339, UTC


class PresignedUrls(msgspec.Struct, frozen=True):
    """Reply of ``stream.presign``: one URL per requested key, in request order."""

    urls: list[PresignedUrl]


PLAYLIST = "stream.playlist"


class SignPlaylist(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Request of ``stream.playlist``: the media key of an HLS media playlist (``.m3u8``)."""

    key: str


class SignedPlaylist(msgspec.Struct, frozen=True):
    """Reply of ``stream.playlist``: the playlist with each URI replaced by a pre-signed URL.

    Only objects under the playlist's own prefix are signed: a playlist naming anything else
    (``../``, an absolute path or URL) is refused with a ``bad_playlist`` error.
    """

    key: str
    body: str
    segments: int
    expires_at: str  # RFC 3339, UTC: when the first of the segment URLs stops working
