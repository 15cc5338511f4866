"""``make bench``'s verdicts: ratios taken within each round, their medians and intervals.

Each target is judged on the median of a ratio taken within each round (drift on a shared
machine moves both sides of a pair alike), with an interval that holds that median with 90%
confidence or more (`median_interval`). `summarize` adds the verdicts, the costs of each
variant against ``off`` and the shares of 10% sampling to the result the JSON keeps.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

BARE = "bare"


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """One variant's round over its copies: the mean of each figure (errors: their sum)."""
    return {
        key: sum(run[key] for run in runs) / (1 if key == "errors" else len(runs))
        for key in runs[0]
    }


def per_round(result: dict[str, Any], kind: str, key: str, a: str, b: str) -> list[float]:
    """``a``'s ``key`` over ``b``'s, round by round: the two ran minutes apart at most."""
    rounds = result["rounds"][kind]
    # A run of b that served nothing (its stack failed) has no ratio; the report says so.
    return [x[key] / y[key] for x, y in zip(rounds[a], rounds[b], strict=True) if y[key]]


def verdicts(result: dict[str, Any]) -> list[tuple[str, list[float], str]]:
    """The targets (docs/performance.md): (what, the ratio in each round, target such as ">= 0.80").

    Each ratio is taken within a round and the verdict is on their median: drift on a shared
    machine moves both sides of a pair alike, which a ratio of two medians over all the rounds
    does not cancel.
    """
    if not {"off", "10%", "100%"} <= result["http"].keys():
        return []
    return [
        ("throughput, tracing 100% / bare", per_round(result, "http", "rps", "100%", BARE),
         ">= 0.80"),
        ("throughput, tracing off / bare", per_round(result, "http", "rps", "off", BARE),
         ">= 1.20"),
        ("RPC round trip c=1 / aiormq floor",
         per_round(result, "rpc", "p50_us", "project", "aiormq"), "<= 1.25"),
        ("cost of 10% sampling", throughput_costs(result, "10%"), "<= 0.05"),
    ]  # fmt: skip


SHARED = ("gateway", "episode", "stream", "broker", "total")


def share_base(result: dict[str, Any]) -> str:
    """What the shares are taken over: ``0%`` when it ran, else ``off``."""
    return "0%" if "0%" in result["rounds"]["http"] else "off"


def sampled_shares(result: dict[str, Any]) -> dict[str, list[float]]:
    """Round by round and process by process: 10%'s extra CPU per request over the base, as a
    share of 100%'s. 0.10 if a traced request costs at 10% what it costs at 100%; more means
    the requests cost more when one in ten is traced than a tenth of tracing them all.

    The base is ``0%`` when it ran: like 10% and 100%, it carries the trace context in every
    request (the broker moves a ``traceparent`` header with each message), so what is left is
    the sampled tenth alone. Over ``off``, that header's cost shows as a share in the broker,
    which records nothing."""
    rounds = result["rounds"]["http"]
    base_name = share_base(result)
    if not {base_name, "10%", "100%"} <= rounds.keys():
        return {}
    shares: dict[str, list[float]] = {name: [] for name in SHARED}
    for base, ten, full in zip(rounds[base_name], rounds["10%"], rounds["100%"], strict=True):
        for name in SHARED:
            key = f"cpu_us_{name}"
            extra = full[key] - base[key]
            if extra > 0:  # 100% cost nothing more in this round: no share to take
                shares[name].append((ten[key] - base[key]) / extra)
    return shares


def throughput_costs(result: dict[str, Any], variant: str) -> list[float]:
    """Per round, the share of ``off``'s throughput that ``variant`` loses."""
    return [1 - r for r in per_round(result, "http", "rps", variant, "off")]


def variant_costs(result: dict[str, Any]) -> dict[str, list[float]]:
    """Per round, what each variant of the project loses against ``off`` (none without it):
    the figure an A/B of ``--variant`` settings is read by."""
    rounds = result["rounds"]["http"]
    if "off" not in rounds:
        return {}
    return {v: throughput_costs(result, v) for v in rounds if v not in {BARE, "off"}}


def met(value: float, target: str) -> bool:
    op, bound = target.split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_interval(values: list[float], confidence: float = 0.90) -> tuple[float, float] | None:
    """An interval that holds the true median with at least ``confidence``, whatever the
    distribution of the rounds: the order statistics x(k) and x(n+1-k) for the largest k such
    that Binomial(n, 1/2) falls below k with probability (1 - confidence) / 2 at most (with
    20 rounds, x(6) to x(15), which holds it with 95.9%). With too few rounds for
    ``confidence`` (under 5 for 90%) it is the whole range, which holds the median with less.
    It is the median of these processes' rounds: stacks started again may differ by more."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None
    tail = (1 - confidence) / 2

    def at_most(j: int) -> float:  # P(B <= j)
        return sum(math.comb(n, i) for i in range(j + 1)) / (1 << n)

    k = 1  # x(k + 1) is as far in as the interval may go while P(B <= k) stays in the tail
    while k + 1 <= n - k and at_most(k) <= tail:
        k += 1
    return ordered[k - 1], ordered[n - k]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its verdicts and shares (medians of the rounds): what the JSON keeps
    and the report prints."""
    targets = {
        what: {"median": median(v), "interval": median_interval(v), "rounds": v, "target": target}
        for what, v, target in verdicts(result)
    }
    shares = {name: median(v) for name, v in sampled_shares(result).items()}
    costs = {
        variant: {"median": median(v), "interval": median_interval(v), "rounds": v}
        for variant, v in variant_costs(result).items()
    }
    return result | {
        "targets": targets,
        "costs": costs,
        "sampled_share": shares,
        "sampled_share_base": share_base(result),
        # 0%'s loss against off: the part of tracing's cost that every request pays, sampled
        # or not (its context made, carried and read). Its own key for the JSON's readers.
        "unsampled_cost": costs.get("0%", {"median": None, "interval": None, "rounds": []}),
    }
