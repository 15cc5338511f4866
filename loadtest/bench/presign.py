"""Pre-signing micro benchmark: botocore's ``generate_presigned_url`` against `stream.presign`.

Two measurements, in rounds that alternate which side goes first so that drift on a shared
machine hits both alike, reported as medians over the rounds:

- **1 URL**: CPU µs to pre-sign one GET URL, botocore's client method against one call of
  `SigV4Presigner.urls` for one key (which includes its fixed cost per call);
- **handler, N**: CPU µs of stream-service's ``stream.presign`` handler (`Procedures.presign`) for
  one ``GET /dramas/{id}`` worth of keys, with an SDK tracer recording the "S3 presign" span,
  once with botocore as the presigner and once with the default one.

CPU time is this process's (``time.process_time_ns``), so other processes on the machine inflate
it less than wall time; it still shares caches and cores with them. No network: pre-signing is
local computation, and the client is configured as `stream.worker.open_s3` configures it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aioboto3
from opentelemetry.sdk.trace import TracerProvider

from stream.contract import Presign
from stream.presign import BotocorePresigner, SigV4Presigner, presigner_for
from stream.settings import Settings
from stream.worker import Procedures, s3_config

# Local placeholders: pre-signing needs a key pair, never a valid one.
_ACCESS_KEY_ID = "AKIDBENCHPRESIGN"
_SECRET_ACCESS_KEY = "bench-presign-secret"  # noqa: S105


def episode_keys(count: int) -> list[str]:
    """Media keys as the catalogue names them: one playlist per episode."""
    return [f"dramas/{1 + n // 20}/ep{1 + n % 20:03d}/index.m3u8" for n in range(count)]


async def cpu_us(action: Callable[[], Awaitable[object]], repeat: int) -> float:
    """CPU µs per call of ``action``, over ``repeat`` calls."""
    start = time.process_time_ns()
    for _ in range(repeat):
        await action()
    return (time.process_time_ns() - start) / 1e3 / repeat


async def measure(
    rounds: int, keys_per_call: int, endpoint_url: str | None, region: str
) -> dict[str, list[float]]:
    """Per-round samples, in µs: per URL and per handler call, botocore and ours."""
    settings = Settings.from_env({"S3_ENDPOINT_URL": endpoint_url or ""})
    session = aioboto3.Session(
        aws_access_key_id=_ACCESS_KEY_ID,
        aws_secret_access_key=_SECRET_ACCESS_KEY,
        region_name=region,
    )
    keys = episode_keys(keys_per_call)
    samples: dict[str, list[float]] = {
        "url botocore": [],
        "url sigv4": [],
        "call botocore": [],
        "call sigv4": [],
    }
    async with session.client("s3", endpoint_url=endpoint_url, config=s3_config(settings)) as s3:
        bucket, ttl_s = settings.media_bucket, settings.presign_ttl_s
        botocore = BotocorePresigner(s3, bucket, ttl_s)
        fast = await presigner_for(s3, bucket, ttl_s)
        if not isinstance(fast, SigV4Presigner):
            raise SystemExit("this client configuration falls back to botocore: nothing to compare")
        provider = TracerProvider()  # records spans; exporting is the broker's cost, not ours
        handlers = {
            name: Procedures(s3, bucket, ttl_s, tracer_provider=provider, presigner=presigner)
            for name, presigner in (("botocore", botocore), ("sigv4", fast))
        }
        request = Presign(keys=keys)
        actions: dict[str, tuple[Callable[[], Awaitable[object]], int]] = {
            "url botocore": (lambda: botocore.url(keys[0]), 200),
            "url sigv4": (lambda: fast.urls(keys[:1], datetime.now(UTC)), 5000),
            "call botocore": (lambda: handlers["botocore"].presign(request), 10),
            "call sigv4": (lambda: handlers["sigv4"].presign(request), 500),
        }
        for action, _repeat in actions.values():  # warm up caches and lazy imports
            await cpu_us(action, 3)
        for n in range(rounds):
            order = list(actions) if n % 2 == 0 else list(reversed(actions))
            for name in order:
                action, repeat = actions[name]
                samples[name].append(await cpu_us(action, repeat))
    return samples


def report(samples: dict[str, list[float]], keys_per_call: int) -> str:
    median = {name: statistics.median(values) for name, values in samples.items()}
    lines = [
        f"{'':<14}{'botocore µs':>13}{'sigv4 µs':>11}{'ratio':>8}",
        *(
            f"{label:<14}{median[f'{kind} botocore']:>13.1f}{median[f'{kind} sigv4']:>11.1f}"
            f"{median[f'{kind} botocore'] / median[f'{kind} sigv4']:>7.0f}x"
            for kind, label in (("url", "1 URL"), ("call", f"handler, {keys_per_call}"))
        ),
        f"(CPU time, medians of {len(samples['url sigv4'])} alternating rounds)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench.presign", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--keys", type=int, default=20, help="keys per stream.presign call (default 20)"
    )
    parser.add_argument(
        "--endpoint-url", default=None, help="a custom endpoint (path style), as S3_ENDPOINT_URL"
    )
    parser.add_argument("--region", default="eu-west-1")
    args = parser.parse_args(argv)
    samples = asyncio.run(measure(args.rounds, args.keys, args.endpoint_url, args.region))
    print(report(samples, args.keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
