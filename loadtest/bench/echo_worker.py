"""``python -m loadtest.bench.echo_worker``: the project's RPC worker, whose handler does nothing.

For ``make bench``: the project's RPC machinery (the same ``RpcWorker`` and tracing set-up the
services use) answering the same small reply as the reference benchmark's bare workers, so the
round trip at concurrency 1 compares RPC layers, not databases or S3.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import msgspec

from broker import RpcWorker, configure_tracing, stop_event, use_event_loop

METHOD = "bench.echo"
QUEUE = "rpc.bench"


class Ask(msgspec.Struct):
    drama_id: int


class Episode(msgspec.Struct):
    n: int
    title: str
    dur: int


class Episodes(msgspec.Struct):
    drama_id: int
    episodes: list[Episode]


async def echo(ask: Ask) -> Episodes:
    return Episodes(ask.drama_id, [Episode(i, f"Episode {i}", 1800) for i in range(3)])


async def run(url: str) -> None:
    stop = stop_event()
    worker = RpcWorker(url, QUEUE, prefetch=256)
    worker.register(METHOD, Ask, echo)
    async with worker:
        print("READY", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench.echo_worker", description=__doc__
    )
    parser.add_argument("--amqp-url", required=True)
    args = parser.parse_args(argv)
    use_event_loop(os.environ.get("EVENT_LOOP", "uvloop"))  # as the services run
    provider = configure_tracing("echo-worker", os.environ)
    try:
        asyncio.run(run(args.amqp_url))
    finally:
        if provider is not None:
            provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
