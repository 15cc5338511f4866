"""The public contract of stream-service: the only module other services may import.

Method ``stream.presign``: media keys in, pre-signed S3 GET URLs out, in the same order.
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
