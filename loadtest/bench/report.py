"""``make bench``'s report: the table it prints, and a plot when matplotlib is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.bench.judge import BARE, met, summarize
from loadtest.bench.measure import PROCESSES


def report(result: dict[str, Any]) -> str:
    http, rpc = result["http"], result["rpc"]
    bare = http[BARE]
    settings = result["settings"]
    head = f"{'variant':<12}{'req/s':>7}{'x bare':>7}{'p50 ms':>8}{'p99 ms':>8}"
    head += "".join(f"{p:>9}" for p in PROCESSES) + f"{'total':>9}{'x bare':>7}"
    lines = [
        f"GET /dramas/{{id}}, wrk -c{settings['connections']}, {settings['seconds']} s a run, "
        f"medians of {settings['rounds']} rounds; CPU in us per request",
        f"(each round: the mean of {settings.get('instances', 1)} copies of every variant, "
        "each started on its own)",
        head,
    ]
    for variant, h in http.items():
        row = f"{variant:<12}{h['rps']:7.0f}{h['rps'] / bare['rps']:7.2f}"
        row += f"{h.get('p50_ms', 0):8.1f}{h.get('p99_ms', 0):8.1f}"
        row += "".join(f"{h[f'cpu_us_{p}']:9.0f}" for p in PROCESSES)
        row += f"{h['cpu_us_total']:9.0f}{h['cpu_us_total'] / bare['cpu_us_total']:7.2f}"
        lines.append(row)
    project, floor = rpc["project"], rpc["aiormq"]
    lines += [
        "",
        "RPC round trip at concurrency 1       p50 us   p99 us",
        f"  project (RpcWorker, AmqpRpcClient) {project['p50_us']:8.0f} {project['p99_us']:8.0f}",
        f"  aiormq floor (reference)           {floor['p50_us']:8.0f} {floor['p99_us']:8.0f}",
    ]  # fmt: skip
    summary = summarize(result)
    lines.append("")
    if summary["targets"]:
        lines += [
            "targets: the median of the ratios taken within each round",
            "  (an interval that holds it with 90% confidence or more; the range of the rounds)",
        ]
    else:
        lines.append("targets: not judged, for want of off, 10% and 100% in this run")
    for what, judged in summary["targets"].items():
        value, target = judged["median"], judged["target"]
        if value is None:
            lines.append(f"  {what:<38}   none  {target:<8} no run of the reference served")
            continue
        verdict = "met" if met(value, target) else "NOT met"
        lines.append(f"  {what:<38}{value:7.2f}  {target:<8} {verdict:<8} {spread(judged)}")
    unsampled = summary["unsampled_cost"]["median"]
    if summary["targets"] and unsampled is not None:  # under the 10% verdict
        lines.append(
            f"  {'of which 0% (context, nothing sampled)':<38}{unsampled:7.2f}"
            f"{'':19}{spread(summary['unsampled_cost'])}"
        )
    # Each other variant's loss against off (an A/B of --variant settings is read here); those
    # above are not repeated.
    shown_above = {"10%", "0%"} if summary["targets"] else set()
    if others := {v: c for v, c in summary["costs"].items() if v not in shown_above}:
        lines += ["", "throughput lost against off, median of the rounds (interval; range)"]
        for variant, cost in others.items():
            if cost["median"] is None:
                lines.append(f"  {variant:<38}   none  no run of off served")
            else:
                lines.append(f"  {variant:<38}{cost['median']:7.2f}{'':19}{spread(cost)}")
    if shares := summary["sampled_share"]:
        base = summary["sampled_share_base"]
        lines += [
            "",
            f"10%'s extra CPU per request over {base}, as a share of 100%'s (0.10: a traced",
            "request costs the same at 10% as at 100%), median of the rounds",
            "  " + "  ".join(
                f"{name} -" if share is None else f"{name} {share:.2f}"
                for name, share in shares.items()
            ),
        ]  # fmt: skip
    return "\n".join(lines)


def spread(judged: dict[str, Any]) -> str:
    """``(low to high; rounds min to max)``: the median's interval (:func:`median_interval`)
    and the range."""
    (low, high), values = judged["interval"], judged["rounds"]
    return f"({low:.2f} to {high:.2f}; rounds {min(values):.2f} to {max(values):.2f})"


def plot(result: dict[str, Any], path: Path) -> bool:
    """Bars of throughput and CPU per request by variant; False without matplotlib."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    http = result["http"]
    names = list(http)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(names, [http[n]["rps"] for n in names], color="#4c72b0")
    left.set_title("GET /dramas/{id} throughput (req/s)")
    bottom = [0.0] * len(names)
    for proc in PROCESSES:
        values = [http[n][f"cpu_us_{proc}"] for n in names]
        right.bar(names, values, bottom=bottom, label=proc)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_title("CPU per request (us), by process")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
