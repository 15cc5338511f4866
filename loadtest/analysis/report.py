"""The analyser's report drawn three ways: a terminal table, a PNG, and one self-contained page.

matplotlib is imported only to draw (with the Agg backend: no display needed), so the table and
``--json`` work without it.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest.analysis.categories import CATEGORIES, QUEUE_SIDE, WIRE_SIDE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from loadtest.analysis.breakdown import Report

COLOURS = {
    "app": "#4c72b0",
    "db": "#dd8452",
    "s3": "#55a868",
    "queue_wait": "#c44e52",
    "transit": "#e6a0a2",
    "reply_wait": "#8172b3",
    "broker": "#937860",
    "mesh": "#da8bc3",
    "network": "#8c8c8c",
    "residual": "#ccb974",
}
TOP = 15  # service:operation rows shown
# What each category of the breakdown means, for the HTML report's key and the docs.
CATEGORY_KEY = {
    "app": "the services' own code: handlers, (de)serialisation, the event loop",
    "db": "database statements, as the SQL driver's spans time them",
    "s3": "object-store calls (presigning, or S3 requests)",
    "queue_wait": "a request waiting in a RabbitMQ queue for a worker to take it (its dwell)",
    "transit": "a request on the wire to the broker and from it to the worker (the queue "
    "wait's wire share, from round trips to the broker)",
    "reply_wait": "a reply travelling back from the worker to the caller",
    "broker": "publishing to RabbitMQ until it confirmed, and a call's time not otherwise "
    "explained",
    "mesh": "Envoy/Istio proxies' own work: an inbound sidecar's time around the application "
    "span under it",
    "network": "on the wire between hosts: a client span's (or outbound sidecar's) time around "
    "its remote server span",
    "residual": "a call whose callee left no span: nothing explains that time",
}


def _rows(document: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    categories = [
        [
            name,
            *(f"{stats[key]:.3f}" for key in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")),
            f"{stats['share']:.1%}",
        ]
        for name, stats in document["categories"].items()
    ]
    path = [
        [
            where,
            f"{stats['mean_ms']:.3f}",
            f"{stats['share']:.1%}",
            f"{stats['p50_share']:.1%}",
            f"{stats['p99_share']:.1%}",
        ]
        for where, stats in list(document["critical_path"].items())[:TOP]
    ]
    return categories, path


CATEGORY_HEAD = ["category", "p50 ms", "p95 ms", "p99 ms", "mean ms", "share"]
PATH_HEAD = ["critical path: service:operation", "mean ms", "share", "at p50", "at p99"]


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _bottleneck_line(document: dict[str, Any]) -> str:
    found = document["bottleneck"]
    if found is None:
        return "bottleneck: none (no time on any critical path)"
    return (
        f"bottleneck: {found['category']} at {found['where']}, "
        f"{found['share']:.1%} of all trace time ({found['mean_ms']:.3f} ms a trace)"
    )


def table(report: Report) -> str:
    """The report for a terminal: categories, top of the critical path, the bottleneck."""
    document = report.to_json(per_trace=False)
    categories, path = _rows(document)
    duration = document["duration"]
    return "\n\n".join(
        [
            f"{document['traces']} traces; duration p50 {duration['p50_ms']:.3f} ms, "
            f"p95 {duration['p95_ms']:.3f} ms, p99 {duration['p99_ms']:.3f} ms",
            _text_table(CATEGORY_HEAD, categories),
            _text_table(PATH_HEAD, path),
            sides_line(document),
            _bottleneck_line(document),
        ]
    )


def figure(report: Report, document: dict[str, Any] | None = None) -> Figure:
    """Stacked breakdown of the traces around p50/p95/p99, and CDFs of queue wait and network.

    ``document``: the report's ``to_json(per_trace=False)``, if the caller has it already.
    """
    from matplotlib.figure import Figure  # noqa: PLC0415 - drawing is optional, and slow to import

    if document is None:
        document = report.to_json(per_trace=False)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    bars, cdf = fig.subplots(1, 2)
    labels = list(document["percentiles"])
    bottom = [0.0] * len(labels)
    for name in CATEGORIES:
        heights = [document["percentiles"][label]["categories_ms"][name] for label in labels]
        bars.bar(labels, heights, bottom=bottom, label=name, color=COLOURS[name])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    bars.set_ylabel("ms (mean of the traces around the percentile)")
    bars.set_title("where the time goes")
    bars.legend(fontsize="small", loc="upper left")
    for side, names, colour in (
        ("in queues", QUEUE_SIDE, COLOURS["queue_wait"]),
        ("on the wire", WIRE_SIDE, COLOURS["network"]),
    ):
        values = sorted(
            sum(result.categories[name] for name in names) / 1000 for result in report.results
        )
        fractions = [(i + 1) / len(values) for i in range(len(values))]
        label = f"{side}: {' + '.join(names)}"
        cdf.step(values, fractions, where="post", label=label, color=colour)
    cdf.set_xlabel("ms per trace")
    cdf.set_ylabel("fraction of traces")
    cdf.set_title("time waiting in queues vs time on the wire")
    cdf.legend(fontsize="small")
    return fig


def sides_line(document: dict[str, Any]) -> str:
    """Queue against wire, per trace, and which categories make each side."""
    sides = document["sides"]
    return "; ".join(
        f"{side} ({' + '.join(stats['categories'])}): p50 {stats['p50_ms']:.3f} ms, "
        f"p99 {stats['p99_ms']:.3f} ms, {stats['share']:.1%} of trace time"
        for side, stats in sides.items()
    )


def png(report: Report, document: dict[str, Any] | None = None) -> bytes:
    buffer = io.BytesIO()
    figure(report, document).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }
td:not(:first-child), th:not(:first-child) {
  text-align: right; font-variant-numeric: tabular-nums;
}
img { max-width: 100%; }
.bottleneck { font-size: 1.2em; padding: 0.5em 1em; background: #fdf2e9; }
.slowest td:first-child, .slowest td:nth-child(2) { text-align: left; }
td.nowrap, td code { white-space: nowrap; }
dl.key dt { font-weight: bold; float: left; clear: left; width: 7em; }
dl.key dd { margin-left: 8em; }
"""


def html_page(document: dict[str, Any], plot: bytes) -> str:
    """One page with everything inline: CSS, the ``plot`` PNG in base64, the tables.

    ``document``: the report's ``to_json(per_trace=False)``.
    """
    categories, path = _rows(document)
    duration = document["duration"]
    image = base64.b64encode(plot).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Latency breakdown</title>
<style>{STYLE}</style></head>
<body>
<h1>Latency breakdown of {document["traces"]} traces</h1>
<p>Duration p50 {duration["p50_ms"]:.3f} ms, p95 {duration["p95_ms"]:.3f} ms,
p99 {duration["p99_ms"]:.3f} ms, mean {duration["mean_ms"]:.3f} ms.</p>
<p class="bottleneck">{html.escape(_bottleneck_line(document))}</p>
<img alt="stacked breakdown by percentile; CDF of time in queues and time on the wire"
 src="data:image/png;base64,{image}">
<p>Queue against wire, per trace: {html.escape(sides_line(document))}.</p>
<h2>Categories</h2>
{_html_table(CATEGORY_HEAD, categories)}
<h2>Critical path</h2>
{_html_table(PATH_HEAD, path)}
{_run_sections(document)}
</body></html>
"""


def _trace_link(trace_id: str | None, template: str | None, short: bool = False) -> str:
    """The id (its first 8 digits if ``short``, the whole on hover), linked by ``template``."""
    if trace_id is None:
        return "-"
    shown = trace_id[:8] if short else trace_id
    text = f'<code title="{html.escape(trace_id)}">{html.escape(shown)}</code>'
    if template is None:
        return text
    return f'<a href="{html.escape(template.format(trace_id=trace_id))}">{text}</a>'


def _comparison_html(comparison: dict[str, Any], template: str | None) -> str:
    head = "".join(f"<th>p{q} ms</th><th>change</th><th>traces</th>" for q in (50, 95, 99))
    rows = []
    for name, figures in [("duration", comparison["duration"]), *comparison["categories"].items()]:
        cells = "".join(
            f'<td class="nowrap">{f["baseline_ms"]:.3f} &rarr; {f["ms"]:.3f}</td>'
            f"<td>{f['change_ms']:+.3f}</td>"
            f'<td class="nowrap">{_trace_link(f["baseline_trace"], template, short=True)} &rarr; '
            f"{_trace_link(f['trace'], template, short=True)}</td>"
            for f in (figures[f"p{q}"] for q in (50, 95, 99))
        )
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return (
        f"<h2>Change from run {html.escape(comparison['baseline_run'])} "
        f"({comparison['baseline_traces']} traces) to "
        f"{html.escape(comparison['run'] or 'the selection')} ({comparison['traces']} traces)</h2>"
        "<p>Baseline &rarr; now at each percentile; the traces nearest each figure, baseline "
        "&rarr; now.</p>"
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _run_sections(document: dict[str, Any]) -> str:
    """The selection, the baseline comparison, the slowest traces and the key of categories."""
    template = document.get("trace_url")
    parts = []
    selection = document.get("selection")
    if selection:
        said = [f"{k} {v}" for k, v in selection.items() if v and k != "incomplete_traces"]
        if said:
            parts.append(f"<p>Selected: {html.escape(', '.join(said))}.</p>")
        if selection.get("incomplete_traces"):
            parts.append(
                f"<p>{selection['incomplete_traces']} traces looked incomplete (a parent span or "
                "the root missing).</p>"
            )
    if "baseline" in document:
        parts.append(_comparison_html(document["baseline"], template))
    if document.get("slowest"):
        rows = "".join(
            f"<tr><td>{_trace_link(t['trace_id'], template)}</td><td>{html.escape(t['root'])}</td>"
            f"<td>{t['duration_ms']:.3f}</td><td>{html.escape(t['top_category'])}</td></tr>"
            for t in document["slowest"]
        )
        parts.append(
            '<h2>Slowest traces</h2><table class="slowest"><thead><tr><th>trace</th>'
            "<th>root</th><th>ms</th><th>largest category</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    key = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(CATEGORY_KEY.get(name, name))}</dd>"
        for name in document["categories"]
    )
    parts.append(f'<h2>Key</h2><dl class="key">{key}</dl>')
    return "\n".join(parts)


def write(
    report: Report, plot: Path | None, page: Path | None, extra: dict[str, Any] | None = None
) -> None:
    """``--plot`` and ``--html``: the PNG, the page, or both from one document and one drawing.

    ``extra``: the selection, slowest traces, baseline comparison and trace link of the page.
    """
    if plot is None and page is None:
        return
    document = report.to_json(per_trace=False) | (extra or {})
    image = png(report, document)
    if plot is not None:
        plot.write_bytes(image)
    if page is not None:
        page.write_text(html_page(document, image))
