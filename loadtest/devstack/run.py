"""``python -m loadtest stack``: the local stack in the foreground, what ``make run`` runs.

It checks that RabbitMQ answers and that its ports are free, starts the embedded S3 endpoint,
seeds the three services' data (idempotent), starts the services, waits until each says it is
ready, prints the URLs to try, starts again a service that dies, and on Ctrl-C stops everything,
the HTTP front first so that no accepted request is lost. The end-to-end tests and the
benchmarks start the same `Stack` (``loadtest.devstack.stack``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from loadtest import cli
from loadtest.devstack import preflight
from loadtest.devstack.config import SERVICES, StackConfig, StackError, venv_python
from loadtest.devstack.stack import Stack
from loadtest.devstack.supervise import supervise


async def _run(config: StackConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    python = venv_python()
    async with Stack(config) as stack:
        base = config.base_url
        traces = (
            f"Traces: {config.spans_path} ({python} -m loadtest analyze --input "
            f"{config.spans_path} --last 5m)"
            if stack.sinks_spans
            else "Traces: sent to OTEL_EXPORTER_OTLP_ENDPOINT"
            if "OTEL_EXPORTER_OTLP_ENDPOINT" in os.environ
            else "Traces: not exported"
        )
        player = (
            f"The player: http://127.0.0.1:{config.web_port}/ (the API on the same origin)\n"
            if config.web_port is not None
            else ""
        )
        print(
            f"\ndrama-streaming is up ({time.monotonic() - started:.1f} s).\n{player}Try:\n"
            f"  curl {base}/dramas/1\n"
            f"  curl '{base}/dramas?limit=5'\n"
            f"  curl {base}/openapi.json\n"
            f"  curl {base}/readyz\n"
            f"  curl {base}/metrics   (workers: :{config.episode_metrics_port}/metrics, "
            f":{config.stream_metrics_port}/metrics)\n"
            f"Load: {python} -m loadtest load --url {base} --duration 10 --run-id try1\n"
            f"Inject a fault: {python} -m loadtest fault --method stream.presign --delay-ms 50\n"
            + (
                f"Slow the network: {python} -m loadtest fault --network-delay-ms 5\n"
                if stack.links
                else ""
            )
            + f"{traces}\n"
            f"Logs: {config.workdir}/*.log. Ctrl-C stops everything.\n",
            flush=True,
        )
        # A service that dies is logged and started again (loadtest/devstack/supervise.py).
        keeper = asyncio.create_task(supervise(stack, SERVICES))
        await stop.wait()
        print("stopping...", flush=True)
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


def _ports(config: StackConfig, sinks: bool) -> list[preflight.Port]:
    ports = [
        preflight.Port(
            config.http_port, "drama-service's HTTP", "--http-port (make run HTTP_PORT=)"
        ),
        preflight.Port(config.s3_port, "the embedded S3", "--s3-port"),
        preflight.Port(config.episode_metrics_port, "episode metrics", "--episode-metrics-port"),
        preflight.Port(config.stream_metrics_port, "stream metrics", "--stream-metrics-port"),
    ]
    if sinks and config.sink_port:
        ports.append(preflight.Port(config.sink_port, "the OTLP sink", "--sink-port"))
    if config.web_port:
        ports.append(preflight.Port(config.web_port, "the player", "--web-port"))
    if config.transport == "http":
        ports.append(preflight.Port(config.episode_rpc_port, "episode RPC over HTTP", "(fixed)"))
        ports.append(preflight.Port(config.stream_rpc_port, "stream RPC over HTTP", "(fixed)"))
    return ports


def _preflight(config: StackConfig) -> list[str]:
    sinks = Stack(config).sinks_spans
    urls = [config.drama_database_url, config.episode_database_url]
    return asyncio.run(
        preflight.problems(config.amqp_url, _ports(config, sinks), config.workdir, urls)
    )


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest stack", __doc__)
    add = parser.add_argument
    add("--http-port", type=cli.PORT, default=8080, help="drama-service's port")
    add("--s3-port", type=cli.PORT, default=9000, help="the embedded S3's port")
    add("--episode-metrics-port", type=cli.PORT, default=9101, help="episode /metrics port")
    add("--stream-metrics-port", type=cli.PORT, default=9102, help="stream /metrics port")
    add("--workdir", type=Path, default=Path(".run"), help="logs, SQLite files and spans")
    add("--dramas", type=cli.integer(1, 1_000_000), default=None, help="seed a generated catalogue")
    add(
        "--transport",
        choices=("amqp", "http"),
        default="amqp",
        help="how drama-service calls the workers (http: they serve RPC on :9111 and :9112)",
    )
    add(
        "--sink-port",
        type=cli.PORT_OR_ZERO,
        default=4318,
        help="without OTEL_EXPORTER_OTLP_ENDPOINT, keep the spans with an OTLP sink on this "
        "port in WORKDIR/spans.jsonl (0: do not export spans)",
    )
    add(
        "--no-network-proxy",
        dest="network_proxy",
        action="store_false",
        help="connect the services directly, without the delaying proxy that "
        "`python -m loadtest fault --network-delay-ms` sets (default: through the proxy)",
    )
    add(
        "--web-port",
        type=cli.PORT_OR_ZERO,
        default=8088,
        help="serve the player (web/dist) and the API together on this port (0: no player)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = StackConfig(
        amqp_url=os.environ.get("AMQP_URL", StackConfig.amqp_url),
        http_port=args.http_port,
        s3_port=args.s3_port,
        episode_metrics_port=args.episode_metrics_port,
        stream_metrics_port=args.stream_metrics_port,
        workdir=args.workdir,
        seed_dramas=args.dramas,
        transport=args.transport,
        sink_port=args.sink_port or None,
        network_proxy=args.network_proxy,
        web_port=args.web_port or None,
        echo=True,
        env={
            # On a laptop every request's line is wanted, with its trace id (services: errors).
            "REQUEST_LOG": os.environ.get("REQUEST_LOG") or "sampled",
            # Spans exported within 0.2 s (SDK default 5 s): the player's waterfall waits less.
            "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or "200",
        },
    )
    debug = os.environ.get("LOG_LEVEL", "").upper() == "DEBUG"
    if not debug:  # aiormq logs a failed connect at length; the check's one line says it
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        found = _preflight(config)
        for problem in found:
            print(f"make run: {problem}", file=sys.stderr)
        if found:
            return 1
        asyncio.run(_run(config))
    except StackError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        print(f"make run: {exc!r} (LOG_LEVEL=DEBUG shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
