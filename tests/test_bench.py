"""``make bench``'s verdicts and shares, from the per-round figures its JSON keeps."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from loadtest.bench.command import VARIANTS, main
from loadtest.bench.judge import combined, median_interval, sampled_shares, summarize
from loadtest.bench.measure import PROCESSES
from loadtest.bench.report import report

CPU = {  # per request, by process: off, 0%, 10% and 100%
    "off": {"gateway": 600, "episode": 300, "stream": 350, "broker": 350},
    # The context in every request: the broker moves a traceparent header with each message.
    "0%": {"gateway": 620, "episode": 305, "stream": 360, "broker": 355},
    "10%": {"gateway": 640, "episode": 310, "stream": 380, "broker": 350},
    "100%": {"gateway": 1000, "episode": 400, "stream": 450, "broker": 370},
}


def run(variant: str, rps: float, scale: float = 1.0) -> dict[str, float]:
    cpu = {f"cpu_us_{p}": CPU.get(variant, CPU["off"]).get(p, 0) * scale for p in PROCESSES}
    return {"rps": rps, "p50_ms": 40.0, "p99_ms": 90.0, **cpu, "cpu_us_total": sum(cpu.values())}


def result(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    rpc = {"project": [{"p50_us": 780.0, "p99_us": 1000.0}] * len(rounds["off"])}
    rpc["aiormq"] = [{"p50_us": 650.0, "p99_us": 900.0}] * len(rounds["off"])
    return {
        "settings": {"connections": 50, "seconds": 8, "rounds": len(rounds["off"])},
        "http": {v: r[len(r) // 2] for v, r in rounds.items()},
        "rpc": {v: r[0] for v, r in rpc.items()},
        "rounds": {"http": rounds, "rpc": rpc},
    }


def test_shares_are_per_round_and_per_process() -> None:
    # Round 2 ran on a slower machine: every process of every variant costs 20% more, so the
    # shares within it stay what they are.
    rounds = {
        "bare": [run("bare", 800), run("bare", 700, 1.2)],
        "off": [run("off", 1100), run("off", 950, 1.2)],
        "10%": [run("10%", 1050), run("10%", 900, 1.2)],
        "100%": [run("100%", 800), run("100%", 700, 1.2)],
    }
    shares = sampled_shares(result(rounds))
    assert shares["gateway"] == pytest.approx([0.1, 0.1])
    assert shares["episode"] == pytest.approx([0.1, 0.1])
    assert shares["stream"] == pytest.approx([0.3, 0.3])
    assert shares["broker"] == pytest.approx([0.0, 0.0])
    assert shares["total"] == pytest.approx([80 / 620] * 2)


def test_a_process_100_percent_did_not_cost_more_has_no_share() -> None:
    rounds = {v: [run(v, 1000)] for v in ("bare", "off", "10%", "100%")}
    rounds["100%"][0]["cpu_us_broker"] = 340  # less than off: no extra to take a share of
    assert sampled_shares(result(rounds))["broker"] == []
    assert "broker -" in report(result(rounds))


def test_report_and_json_carry_the_verdicts_and_shares() -> None:
    rounds = {
        "bare": [run("bare", 800)],
        "off": [run("off", 1000)],
        "10%": [run("10%", 900)],
        "100%": [run("100%", 700)],
    }
    text = report(result(rounds))
    assert "cost of 10% sampling                     0.10  <= 0.05  NOT met" in text
    assert "RPC round trip c=1 / aiormq floor        1.20  <= 1.25  met" in text
    assert "gateway 0.10  episode 0.10  stream 0.30  broker 0.00" in text
    summary = summarize(result(rounds))
    assert summary["targets"]["cost of 10% sampling"]["median"] == pytest.approx(0.1)
    assert summary["targets"]["throughput, tracing 100% / bare"]["rounds"] == [0.875]
    assert summary["sampled_share"]["stream"] == pytest.approx(0.3)
    assert summary["targets"]["cost of 10% sampling"]["interval"] == pytest.approx((0.1, 0.1))
    assert "(0.10 to 0.10; rounds 0.10 to 0.10)" in text


@pytest.mark.parametrize(
    ("n", "k"),
    [(2, 1), (4, 1), (5, 1), (10, 2), (20, 6), (100, 42)],  # binomial tables: x(k), x(n + 1 - k)
)
def test_the_median_interval_is_the_order_statistics_of_90_percent(n: int, k: int) -> None:
    values = [float(i) for i in range(1, n + 1)]
    random.Random(n).shuffle(values)  # noqa: S311 - the rounds come in any order
    assert median_interval(values) == (k, n + 1 - k)
    if n < 5:
        return  # too few rounds: the whole range
    below = sum(math.comb(n, i) for i in range(k)) / 2**n
    assert 1 - 2 * below >= 0.90  # holds the median 90% of the time at least...
    one_more = below + math.comb(n, k) / 2**n
    assert k + 1 > n - k or 1 - 2 * one_more < 0.90  # ... and is the narrowest that does


def test_too_few_rounds_give_the_whole_range() -> None:
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)
    assert median_interval([2.0]) == (2.0, 2.0)
    assert median_interval([]) is None


def test_without_the_three_variants_there_is_nothing_to_judge() -> None:
    rounds = {"bare": [run("bare", 800)], "off": [run("off", 1000)]}
    assert sampled_shares(result(rounds)) == {}
    assert summarize(result(rounds))["targets"] == {}
    assert "share" not in report(result(rounds))


def test_an_a_b_run_reports_what_each_variant_loses_against_off() -> None:
    # `--only off,0%,0%-none --variant 0%-none:...`: no targets to judge, the A/B to read.
    rounds = {
        "bare": [run("bare", 800), run("bare", 800)],
        "off": [run("off", 1000), run("off", 1000)],
        "0%": [run("0%", 960), run("0%", 940)],
        "0%-none": [run("0%", 980), run("0%", 960)],
    }
    summary = summarize(result(rounds))
    assert summary["costs"]["0%"]["rounds"] == pytest.approx([0.04, 0.06])
    assert summary["costs"]["0%-none"]["median"] == pytest.approx(0.03)
    assert "bare" not in summary["costs"]
    assert "off" not in summary["costs"]
    text = report(result(rounds))
    assert "not judged, for want of off, 10% and 100% in this run" in text
    assert "  0%-none                                  0.03" in text
    assert "(0.02 to 0.04; rounds 0.02 to 0.04)" in text
    # A full run judges 10% and reads 0% under it: neither is repeated, the others are.
    rounds = {v: [run(v, rps)] for v, rps in {"bare": 800, "off": 1000, "0%": 980}.items()}
    rounds |= {"10%": [run("10%", 900)], "100%": [run("100%", 700)], "req-confs": [run("off", 950)]}
    text = report(result(rounds))
    block = text.split("throughput lost against off")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split()[:2] for line in block] == [["100%", "0.30"], ["req-confs", "0.05"]]


def test_with_0_percent_the_shares_are_the_sampled_tenths_alone() -> None:
    assert "0%" in VARIANTS  # make bench runs it
    rounds = {
        "bare": [run("bare", 800)],
        "off": [run("off", 1000)],
        "0%": [run("0%", 980)],
        "10%": [run("10%", 900)],
        "100%": [run("100%", 700)],
    }
    shares = sampled_shares(result(rounds))
    # Taken from 0%'s figures, not off's: the broker's (350 - 355) / (370 - 355), where over
    # off it would be 0.0; the gateway's (640 - 620) / (1000 - 620).
    assert shares["broker"] == pytest.approx([-5 / 15])
    assert shares["gateway"] == pytest.approx([20 / 380])
    summary = summarize(result(rounds))
    assert summary["sampled_share_base"] == "0%"
    assert summary["unsampled_cost"]["median"] == pytest.approx(0.02)
    text = report(result(rounds))
    assert "  of which 0% (context, nothing sampled)   0.02" in text
    assert "10%'s extra CPU per request over 0%, as a share of 100%'s" in text
    # Without 0% there is no such line, and the shares are over off.
    del rounds["0%"]
    assert summarize(result(rounds))["unsampled_cost"]["median"] is None
    assert "of which 0%" not in report(result(rounds))


def test_a_round_of_several_copies_is_their_mean_and_their_errors_summed() -> None:
    first = {"rps": 1000.0, "cpu_us_total": 1500.0, "errors": 1.0}
    second = {"rps": 1200.0, "cpu_us_total": 1300.0, "errors": 2.0}
    assert combined([first, second]) == {"rps": 1100.0, "cpu_us_total": 1400.0, "errors": 3.0}
    assert combined([first]) == first


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--instances", "0"], "argument --instances: must be a whole number >= 1"),
        (["--rounds", "0"], "argument --rounds: must be a whole number >= 1"),
        (["--instances", "7"], "at most 40 stacks"),  # 6 variants by default: 42
    ],
)
def test_no_copies_no_rounds_or_too_many_stacks_are_refused(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err
