"""The public contract of episode-service: the only module other services may import.

Method ``episode.list``: the episodes of a batch of dramas, in the order asked, each with the
S3 key of its media (an HLS playlist) that stream-service turns into a pre-signed URL.
"""

from __future__ import annotations

import msgspec

QUEUE = "rpc.episode"
LIST = "episode.list"

MAX_DRAMAS = 100


class ListEpisodes(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Request of ``episode.list``.

    ``per_drama`` caps the episodes returned for each drama (``total`` still counts them all);
    ``None`` returns every episode.
    """

    drama_ids: list[int]
    per_drama: int | None = None


class Episode(msgspec.Struct, frozen=True):
    number: int
    title: str
    duration_s: int
    media_key: str


class DramaEpisodes(msgspec.Struct, frozen=True):
    drama_id: int
    total: int
    episodes: list[Episode]


class EpisodeList(msgspec.Struct, frozen=True):
    """Reply of ``episode.list``: one entry per requested drama id, in request order."""

    dramas: list[DramaEpisodes]
