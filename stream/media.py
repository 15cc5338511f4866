"""The HLS VOD media put behind each seeded media key: playable, or a tiny placeholder.

`encode_hls` makes real media with ffmpeg (Debian's package): six seconds of colour bars with
the drama's title and the running time burned in, and a 440 Hz tone; H.264 (Main) and AAC-LC in
MPEG-TS, three 2-second segments, a key frame at each segment start so that seeking lands on one.
That is what Debian's Chromium decodes through Media Source Extensions (hls.js transmuxes the
MPEG-TS to fMP4). One encoding is made per drama and copied under each of its episodes' keys: a
drama of 16 episodes costs one ffmpeg run (about 0.5 s of CPU), not 16.

`hls_sample` is the placeholder a machine without ffmpeg gets: a media playlist and three
MPEG-TS segments that only look like HLS. A segment holds a PAT and a PMT with correct CRCs (the
PAT is byte for byte the one ffmpeg writes), so a demuxer finds one H.264 program, and two null
packets whose payload names the segment; there is no video to decode.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

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


class EncoderError(RuntimeError):
    """ffmpeg is missing or failed."""


# Bars compress to ~25 kB a segment (a test pattern of noise would be 5 times that).
_FFMPEG_VIDEO = "smptebars=size=480x270:rate=24:duration={seconds}"
_FFMPEG_AUDIO = "sine=frequency=440:sample_rate=44100:duration={seconds}"
_TEXT = "fontcolor=white:box=1:boxcolor=black@0.7:x=(w-tw)/2"
_MEDIA_SECONDS = 6
_MEDIA_SEGMENT_SECONDS = 2
# Change with the ffmpeg arguments below: it names the cached encodings (`DramaMedia`).
_ENCODING = "v1 smptebars 480x270 24fps h264-main crf30 aac 2s-segments 6s"


def ffmpeg_path() -> str | None:
    """The ffmpeg executable on PATH, or None."""
    return shutil.which("ffmpeg")


async def encode_hls(title: str, *, ffmpeg: str = "ffmpeg") -> dict[str, bytes]:
    """Encode a short HLS VOD with ``title`` burned in; returns ``{"index.m3u8": ..., "seg000.ts":
    ...}``, names relative to the playlist (use `place` to put them under a media key)."""
    with tempfile.TemporaryDirectory(prefix="hls-") as workdir:
        out = Path(workdir)
        # A text file, not text=: a title then needs no escaping for the filter graph.
        (out / "title.txt").write_text(title, encoding="utf-8")
        keyframes = str(24 * _MEDIA_SEGMENT_SECONDS)
        video_filter = ",".join(
            [
                f"drawtext=textfile={out / 'title.txt'}:expansion=none:fontsize=26:"
                f"boxborderw=8:y=h/2-th-6:{_TEXT}",
                f"drawtext=text='%{{pts\\:hms}}':fontsize=20:boxborderw=6:y=h/2+10:{_TEXT}",
            ]
        )
        # fmt: off
        args = [
            "-hide_banner", "-loglevel", "error", "-nostdin",
            "-f", "lavfi", "-i", _FFMPEG_VIDEO.format(seconds=_MEDIA_SECONDS),
            "-f", "lavfi", "-i", _FFMPEG_AUDIO.format(seconds=_MEDIA_SECONDS),
            "-vf", video_filter,
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-profile:v", "main",
            "-pix_fmt", "yuv420p", "-g", keyframes, "-keyint_min", keyframes,
            "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "48k", "-ac", "2",
            "-f", "hls", "-hls_time", str(_MEDIA_SEGMENT_SECONDS),
            "-hls_playlist_type", "vod",
            "-hls_segment_filename", str(out / "seg%03d.ts"),
            str(out / "index.m3u8"),
        ]
        # fmt: on
        try:
            process = await asyncio.create_subprocess_exec(
                ffmpeg, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except FileNotFoundError:
            raise EncoderError(f"{ffmpeg} not found (Debian package ffmpeg)") from None
        _, stderr = await process.communicate()
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip()[-500:]
            raise EncoderError(f"ffmpeg exited with {process.returncode}: {detail}")
        return _read_outputs(out)


def _read_outputs(out: Path) -> dict[str, bytes]:
    # A few small files of a local temporary directory: not worth a thread.
    return {
        path.name: path.read_bytes()
        for path in sorted(out.iterdir())
        if path.suffix in (".m3u8", ".ts")
    }


def place(media_key: str, encoded: Mapping[str, bytes]) -> dict[str, bytes]:
    """The objects of ``encoded`` under ``media_key``: its playlist at the key (first), the
    segments beside it, so that the playlist's relative segment names resolve."""
    if not media_key.endswith(".m3u8") or media_key.startswith("/"):
        raise ValueError(f"not a playlist key: {media_key!r}")
    prefix = posixpath.dirname(media_key)
    objects = {media_key: encoded["index.m3u8"]}
    for name, body in encoded.items():
        if name != "index.m3u8":
            objects[posixpath.join(prefix, name)] = body
    return objects


class DramaMedia:
    """The objects of each media key, from one encoding per drama made on first use.

    ``episodes`` maps each media key to its drama's ``(id, title)``. At most ``parallel``
    encodings run at once (ffmpeg's veryfast preset keeps about one core busy). Use it as an
    ``async with`` block: leaving it cancels the encodings nobody awaited. With ``cache``, each
    encoding is kept in that directory and reused by later seeds (the test suite seeds often).
    """

    def __init__(
        self,
        episodes: Mapping[str, tuple[int, str]],
        *,
        ffmpeg: str,
        parallel: int = 2,
        cache: Path | None = None,
    ) -> None:
        self._episodes = episodes
        self._ffmpeg = ffmpeg
        self._cache = cache
        self._limit = asyncio.Semaphore(parallel)
        self._encodings: dict[int, asyncio.Future[dict[str, bytes]]] = {}

    async def objects(self, media_key: str) -> dict[str, bytes]:
        drama_id, title = self._episodes[media_key]
        encoding = self._encodings.get(drama_id)
        if encoding is None:
            # A future, so that the keys of one drama seeded at once share one ffmpeg run; a
            # failed encoding fails every key waiting on it, and the seed with them.
            encoding = self._encodings[drama_id] = asyncio.ensure_future(
                self._encode(f"{drama_id}. {title}")
            )
        return place(media_key, await asyncio.shield(encoding))

    async def __aenter__(self) -> DramaMedia:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Cancel and await the encodings still running (a seed that failed half way)."""
        for encoding in self._encodings.values():
            encoding.cancel()
        await asyncio.gather(*self._encodings.values(), return_exceptions=True)

    async def _encode(self, title: str) -> dict[str, bytes]:
        if self._cache is None:
            async with self._limit:
                return await encode_hls(title, ffmpeg=self._ffmpeg)
        # Same title, same encoder settings, same bytes: a directory per digest of both.
        digest = hashlib.sha256(f"{_ENCODING}\n{title}".encode()).hexdigest()[:24]
        kept = self._cache / digest
        if (kept / "index.m3u8").is_file():
            return _read_outputs(kept)
        async with self._limit:
            encoded = await encode_hls(title, ffmpeg=self._ffmpeg)
        _keep(kept, encoded)
        return encoded


def _keep(directory: Path, encoded: Mapping[str, bytes]) -> None:
    """Write ``encoded`` into ``directory`` whole or not at all (another seed may race us)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hls-", dir=directory.parent))
    for name, body in encoded.items():
        (staging / name).write_bytes(body)
    try:
        staging.rename(directory)
    except OSError:  # another seed kept the same encoding first
        shutil.rmtree(staging, ignore_errors=True)


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
