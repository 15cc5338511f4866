"""``python -m loadtest fault``: inject or clear a fault in running workers, no restart needed.

The rule goes out on the broker's ``rpc.control`` exchange to every worker started with
``FAULTS_ENABLED=true`` (``make run`` starts them so); each one that matches answers with the
rules now active on it, and those answers are printed. Examples::

    python -m loadtest fault --method stream.presign --delay-ms 50        # slow stream worker
    python -m loadtest fault --queue rpc.episode --prefetch 1 --delay-ms 20  # congested queue
    python -m loadtest fault --method episode.list --db-delay-ms 30       # slow episode database
    python -m loadtest fault --network-delay-ms 5                         # slow network, each way
    python -m loadtest fault --clear                                      # back to normal
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import aiormq
import msgspec

from broker import FaultRule, redact_url, send_fault_rule
from loadtest import cli

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def parser() -> cli.Parser:
    parser = cli.Parser("python -m loadtest fault", __doc__)
    parser.add_argument(
        "--amqp-url",
        type=cli.amqp_url,
        default=None,
        help=f"the broker (default: $AMQP_URL, else {DEFAULT_AMQP_URL})",
    )
    parser.add_argument(
        "--exchange", type=cli.name, default="rpc.control", help="the control exchange"
    )
    parser.add_argument(
        "--queue", type=cli.name, help="only the workers of this queue (rpc.episode, rpc.stream)"
    )
    parser.add_argument(
        "--method", type=cli.name, help="only this method (episode.list, stream.presign)"
    )
    parser.add_argument(
        "--delay-ms", type=cli.number(0, 600_000), default=0.0, help="added handler time"
    )
    parser.add_argument(
        "--delay",
        choices=("fixed", "uniform", "exponential"),
        default="fixed",
        help="fixed, uniform on [0, 2x], or exponential with that mean",
    )
    parser.add_argument(
        "--error-rate", type=cli.number(0, 1), default=0.0, help="share answered 'injected'"
    )
    parser.add_argument(
        "--db-delay-ms", type=cli.number(0, 600_000), default=0.0, help="added to each statement"
    )
    parser.add_argument(
        "--prefetch", type=cli.integer(1, 65535), help="the worker's prefetch (lower: congestion)"
    )
    network = parser.add_argument_group(
        "slow network (the dev stack's delaying proxy, loadtest/devstack/netdelay.py)"
    )
    network.add_argument(
        "--network-delay-ms", type=cli.number(0, 600_000), default=0.0, help="added each way"
    )
    network.add_argument(
        "--network-jitter-ms", type=cli.number(0, 600_000), default=0.0, help="delay +- this"
    )
    network.add_argument(
        "--network-direction",
        choices=("both", "request", "reply"),
        default="both",
        help="request: towards the broker or worker; reply: back",
    )
    network.add_argument(
        "--network-link", help="one link: drama-amqp, workers-amqp, episode-http, stream-http"
    )
    parser.add_argument("--clear", action="store_true", help="remove the selected rules")
    parser.add_argument(
        "--expect", type=cli.integer(1, 10_000), help="return once this many workers answered"
    )
    parser.add_argument(
        "--wait",
        type=cli.number(0, 600, low_open=True),
        default=2.0,
        help="seconds to wait for answers",
    )
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.amqp_url = args.amqp_url or os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except SystemExit as exc:  # a bad option (said on stderr), or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        fields = {
            "queue": args.queue,
            "method": args.method,
            "delay_ms": args.delay_ms,
            "delay": args.delay,
            "error_rate": args.error_rate,
            "db_delay_ms": args.db_delay_ms,
            "prefetch": args.prefetch,
            "clear": args.clear,
            "network_link": args.network_link,
            "network_delay_ms": args.network_delay_ms,
            "network_jitter_ms": args.network_jitter_ms,
            "network_direction": args.network_direction,
        }
        default = FaultRule()
        # Only what was asked for, so the workers' answers read like the command line.
        rule = msgspec.convert(
            {k: v for k, v in fields.items() if v != getattr(default, k)}, FaultRule
        )
    except msgspec.ValidationError as exc:
        print(f"fault: {exc}", file=sys.stderr)
        return 2
    # aiormq logs a failed connect at length; the one line below says it.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        acks = asyncio.run(
            send_fault_rule(
                args.amqp_url, rule, exchange=args.exchange, expect=args.expect, wait=args.wait
            )
        )
    except (OSError, aiormq.exceptions.AMQPError) as exc:
        return cli.fail(
            "fault",
            f"{redact_url(args.amqp_url)}: {exc!r}: is RabbitMQ running, and are --amqp-url "
            "(or AMQP_URL) and its user right?",
        )
    if not acks:
        print(
            f"fault: no worker answered on {redact_url(args.amqp_url)}: are they running with "
            "FAULTS_ENABLED=true, and does --queue name their queue?",
            file=sys.stderr,
        )
        return 1
    for ack in acks:
        rules = msgspec.json.encode(ack.rules).decode()
        print(f"{ack.queue} {ack.host}:{ack.pid} prefetch={ack.prefetch} rules={rules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
