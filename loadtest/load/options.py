"""``python -m loadtest load``: open- or closed-loop load on the HTTP API, and rate sweeps.

Sends a mix of ``GET /dramas?limit=&cursor=`` (``list``) and ``GET /dramas/{id}`` (``detail``)
over the catalogue it finds at ``--url`` (or ``--ids``). Open loop by default: constant or
Poisson arrivals at ``--rate``, latency from each request's intended send time, so queueing is
never hidden (docs/load.md). Every request carries ``baggage: synthetic=true,loadtest.run=<id>``
so the services' traces can tell load from users. Prints a table; ``--json FILE`` (``-`` for
stdout) writes the full result. ``--sweep START:STOP:FACTOR`` runs open-loop steps at growing
rates and reports the highest whose p99 stays within ``--p99-ms``.
"""

from __future__ import annotations

import argparse

from loadtest import cli
from loadtest.load.schedule import parse_ids, parse_mix, sweep_rates

MAX_RATE = 100_000.0  # requests a second; more than one process can send anyway
MAX_SHOTS = 5_000_000  # an open-loop plan is built up front: this bounds its memory (~1 GB)


def _json_target(text: str) -> str:
    return text if text == "-" else str(cli.new_file(text))


def _sweep(text: str) -> tuple[float, float, float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"must be START:STOP:FACTOR, e.g. 10:160:2, not {text!r}")
    rate = cli.number(0, MAX_RATE, low_open=True)
    start, stop = rate(parts[0]), rate(parts[1])
    factor = cli.number(1.05, 100)(parts[2])
    try:
        steps = sweep_rates(start, stop, factor)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, not {text!r}") from None
    if len(steps) > 100:
        raise argparse.ArgumentTypeError(f"makes {len(steps)} steps, more than 100: {text!r}")
    return start, stop, factor


def parser() -> argparse.ArgumentParser:
    p = cli.Parser("python -m loadtest load", __doc__)
    add = p.add_argument
    add("--url", type=cli.http_url, default="http://127.0.0.1:8080", help="drama-service's URL")
    add(
        "--mode",
        choices=("open", "closed"),
        default="open",
        help="open: arrivals at --rate "
        "whatever the answers; closed: --concurrency users, each waiting for its answer",
    )
    add(
        "--rate",
        type=cli.number(0, MAX_RATE, low_open=True),
        default=50.0,
        help="open loop: requests a second",
    )
    add(
        "--arrivals",
        choices=("poisson", "constant"),
        default="poisson",
        help="open loop: random (Poisson) or evenly spaced send times",
    )
    add(
        "--duration",
        type=cli.number(0, 86_400, low_open=True),
        default=30.0,
        help="seconds measured",
    )
    add("--warmup", type=cli.number(0, 3600), default=2.0, help="seconds sent first, not measured")
    add("--concurrency", type=cli.integer(1, 10_000), default=16, help="closed loop: users")
    add(
        "--max-in-flight",
        type=cli.integer(1, 100_000),
        default=1000,
        help="open loop: connections at most (more are counted as not started)",
    )
    add(
        "--timeout",
        type=cli.number(0, 3600, low_open=True),
        default=10.0,
        help="seconds from intended send to giving up",
    )
    add(
        "--mix",
        type=cli.validated(parse_mix),
        default="list=1,detail=4",
        help="scenario weights, list=W,detail=W",
    )
    add(
        "--ids",
        type=cli.validated(parse_ids),
        default=None,
        help="drama ids for detail, e.g. 1-20,35 (default: those GET /dramas lists)",
    )
    add(
        "--seed",
        type=cli.integer(0, 2**63 - 1),
        default=1,
        help="seed of arrivals and request choice",
    )
    add(
        "--run-id",
        type=cli.name,
        default=None,
        help="loadtest.run in the baggage, for analyze --run (default: a new random id)",
    )
    add(
        "--sweep",
        type=_sweep,
        metavar="START:STOP:FACTOR",
        default=None,
        help="open-loop steps at growing rates, e.g. 10:160:2",
    )
    add(
        "--p99-ms",
        type=cli.number(0, 3_600_000, low_open=True),
        default=250.0,
        help="sweep: the p99 latency limit",
    )
    add(
        "--max-error-rate",
        type=cli.number(0, 1),
        default=0.01,
        help="sweep: the failed share limit",
    )
    add(
        "--json",
        type=_json_target,
        metavar="FILE",
        default=None,
        help="write the result as JSON ('-': stdout)",
    )
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What no single option can check: the size of an open-loop plan."""
    if args.mode == "closed" and args.sweep:
        p.error("argument --sweep: runs open-loop steps; leave out --mode closed")
    top = args.sweep[1] if args.sweep else args.rate
    if args.mode == "open" and top * (args.warmup + args.duration) > MAX_SHOTS:
        p.error(
            f"argument --rate: {top:g}/s over {args.warmup + args.duration:g} s plans more than "
            f"{MAX_SHOTS:,} requests; lower --rate or --duration"
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked: a bad one exits 2 with one line."""
    p = parser()
    args = p.parse_args(argv)
    _check(p, args)
    return args
