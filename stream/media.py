"""A tiny, deterministic HLS VOD sample to put behind each seeded media key.

Seeding a catalogue of 10,000 dramas must not need real video: the player, the pre-signed URLs and
the latency figures only need objects that look like HLS. Each sample is a media playlist at the
media key and three MPEG-TS segments beside it. A segment holds a PAT and a PMT with correct
CRCs (the PAT is byte for byte the one ffmpeg writes), so a demuxer finds one H.264 program, and
two null packets whose payload names the segment; there is no video to decode.
"""

from __future__ import annotations

import posixpath

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CONTENT_TYPE = "video/mp2t"

_SEGMENT_SECONDS = (4.0, 4.0, 2.0)
_TS_PACKET = 188
_SYNC = 0x47
_PMT_PID = 0x1000
_VIDEO_PID = 0x0100
_NULL_PID = 0x1FFF
_NULL_PACKETS = 2


def hls_sample(media_key: str) -> dict[str, bytes]:
    """Return the objects of a small HLS VOD sample, keyed by object key.

    The playlist sits at ``media_key`` (which must end in ``.m3u8``) and comes first; its segments
    (``seg000.ts``...) sit beside it and are referenced by relative URIs, so a pre-signed playlist
    URL resolves them against the same prefix.
    """
    if not media_key.endswith(".m3u8") or media_key.startswith("/"):
        raise ValueError(f"not a playlist key: {media_key!r}")
    prefix = posixpath.dirname(media_key)
    names = [f"seg{index:03d}.ts" for index in range(len(_SEGMENT_SECONDS))]
    objects = {media_key: _playlist(names)}
    for index, name in enumerate(names):
        objects[posixpath.join(prefix, name)] = _segment(index)
    return objects


def content_type(key: str) -> str:
    """The Content-Type to store an object of a sample with, chosen by its extension."""
    if key.endswith(".m3u8"):
        return PLAYLIST_CONTENT_TYPE
    if key.endswith(".ts"):
        return SEGMENT_CONTENT_TYPE
    return "application/octet-stream"


def _playlist(segment_names: list[str]) -> bytes:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{round(max(_SEGMENT_SECONDS))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    for seconds, name in zip(_SEGMENT_SECONDS, segment_names, strict=True):
        lines += [f"#EXTINF:{seconds:.3f},", name]
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def _segment(index: int) -> bytes:
    # The continuity counter follows the segment index, as it would across a real stream.
    counter = index % 16
    pat = _section(
        bytes([0x00])  # table_id: program_association_section
        + _section_body(table_id_extension=1, payload=b"\x00\x01" + _pid(_PMT_PID, 0xE000))
    )
    pmt = _section(
        bytes([0x02])  # table_id: TS_program_map_section
        + _section_body(
            table_id_extension=1,  # program_number
            payload=_pid(_VIDEO_PID, 0xE000)  # PCR_PID
            + b"\xf0\x00"  # program_info_length 0
            + b"\x1b"  # stream_type: H.264
            + _pid(_VIDEO_PID, 0xE000)
            + b"\xf0\x00",  # ES_info_length 0
        )
    )
    packets = [
        _packet(0x0000, pat, counter, start=True),
        _packet(_PMT_PID, pmt, counter, start=True),
    ]
    filler = f"drama-streaming sample segment {index:03d}".encode()
    packets += [_packet(_NULL_PID, filler, counter, start=False) for _ in range(_NULL_PACKETS)]
    return b"".join(packets)


def _section_body(*, table_id_extension: int, payload: bytes) -> bytes:
    # section_length counts everything after itself: 5 header bytes, the payload and the CRC.
    length = 5 + len(payload) + 4
    header = (0xB000 | length).to_bytes(2, "big")  # section_syntax_indicator, reserved bits
    return (
        header
        + table_id_extension.to_bytes(2, "big")
        + b"\xc1"  # reserved, version 0, current_next_indicator
        + b"\x00\x00"  # section_number, last_section_number
        + payload
    )


def _section(table: bytes) -> bytes:
    # A section starts after a pointer_field of 0 and ends with its CRC-32/MPEG-2.
    return b"\x00" + table + _crc32_mpeg2(table).to_bytes(4, "big")


def _pid(pid: int, reserved: int) -> bytes:
    return (reserved | pid).to_bytes(2, "big")


def _packet(pid: int, payload: bytes, counter: int, *, start: bool) -> bytes:
    header = bytes(
        [
            _SYNC,
            (0x40 if start else 0x00) | (pid >> 8),  # payload_unit_start_indicator, PID high bits
            pid & 0xFF,
            0x10 | counter,  # payload only, continuity_counter
        ]
    )
    return (header + payload).ljust(_TS_PACKET, b"\xff")


def _crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc
