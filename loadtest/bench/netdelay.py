"""``python -m loadtest.bench.netdelay``: what the delaying proxy costs when it delays nothing.

Sequential ping-pongs (200 bytes each way) to a TCP echo server in this process, straight and
through ``python -m loadtest.devstack.netdelay`` (a process of its own, as in the stack) with no
delay set, alternating in rounds so that a busy machine weighs on both alike. Prints the median and
p99 round trip of each, and the difference: what one proxied hop adds to a round trip (the
stack has one on each way to the broker, so an RPC over AMQP crosses it four times: request
and reply, caller's and worker's side).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from loadtest.devstack.config import free_port

PAYLOAD = b"x" * 200


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
    writer.close()


async def _pings(host: str, port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection(host, port)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        writer.write(PAYLOAD)
        await reader.readexactly(len(PAYLOAD))
        times.append(time.perf_counter() - started)
    writer.close()
    await writer.wait_closed()
    return times


async def bench(rounds: int, count: int) -> dict[str, list[float]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    listen = free_port()
    proxy = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest.devstack.netdelay",
        "--link", f"bench={listen}:127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    found: dict[str, list[float]] = {"direct": [], "proxied": []}
    try:
        assert proxy.stdout is not None
        while b"netdelay ready" not in await proxy.stdout.readline():
            pass
        for _ in range(rounds):
            found["direct"] += await _pings("127.0.0.1", port, count)
            found["proxied"] += await _pings("127.0.0.1", listen, count)
    finally:
        proxy.terminate()
        await proxy.wait()
        server.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.netdelay", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--count", type=int, default=500, help="ping-pongs a round and a path")
    args = parser.parse_args(argv)
    found = asyncio.run(bench(args.rounds, args.count))
    medians = {}
    for name, times in found.items():
        ordered = sorted(times)
        medians[name] = statistics.median(ordered) * 1e6
        p99 = ordered[int(len(ordered) * 0.99)] * 1e6
        print(f"{name:8} {len(times)} round trips: median {medians[name]:.0f} us, p99 {p99:.0f} us")
    print(f"one proxied hop adds {medians['proxied'] - medians['direct']:.0f} us a round trip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
