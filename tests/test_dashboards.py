"""The provisioned Grafana dashboards and data sources (observability/grafana/).

Checked from the files alone: every panel is complete and points at the provisioned Prometheus;
every expression reads only the metrics of the metrics contract, prometheus-client's process
metrics and the RabbitMQ plugin's metrics listed below; histogram panels ask for exemplars;
exemplars link to Jaeger. Whether each expression is valid and returns data, with the labels
its legend uses, is asked of a real Prometheus in test_prometheus_live.py.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.promql import metric_names

# PyYAML ships no type stubs and types-PyYAML is no dev dependency: loaded untyped on purpose.
yaml = importlib.import_module("yaml")

GRAFANA = Path(__file__).resolve().parents[1] / "observability" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
TARGET_LABELS = frozenset({"job", "instance"})

# The metrics contract: name -> (type, labels besides job and instance).
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "http_server_request_duration_seconds": (
        "histogram",
        frozenset({"route", "method", "status"}),
    ),
    "http_server_requests_in_flight": ("gauge", frozenset()),
    "rpc_client_duration_seconds": ("histogram", frozenset({"method", "outcome"})),
    "rpc_overhead_seconds": ("histogram", frozenset({"method"})),
    "rpc_client_calls_in_flight": ("gauge", frozenset({"method"})),
    "rpc_client_errors_total": ("counter", frozenset({"method", "error_type"})),
    "rpc_queue_wait_seconds": ("histogram", frozenset({"method"})),
    "rpc_queue_transit_seconds": ("histogram", frozenset({"method"})),
    "rpc_queue_dwell_seconds": ("histogram", frozenset({"method"})),
    "rpc_broker_round_trip_seconds": ("gauge", frozenset()),
    "rpc_handler_duration_seconds": ("histogram", frozenset({"method", "outcome"})),
    "rpc_handler_in_flight": ("gauge", frozenset({"method"})),
    "rpc_dead_lettered_total": ("counter", frozenset({"queue", "reason"})),
    "rpc_client_breaker_state": ("gauge", frozenset({"method"})),
    "http_server_requests_shed_total": ("counter", frozenset()),
}

# prometheus-client's default process collector (no labels of its own).
PROCESS_METRICS = frozenset(
    {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
)

# The RabbitMQ plugin's metrics the dashboards may use, with their labels, as RabbitMQ 3.10.8
# serves them: per queue from /metrics/detailed?family=queue_coarse_metrics&family=
# queue_consumer_count, the rest from /metrics. If a broker names them otherwise, rename them
# here and in the dashboards' JSON (observability/grafana/README.md, "Changing things").
_PER_QUEUE = frozenset({"vhost", "queue"})
_DEAD_LETTERED = frozenset({"queue_type", "dead_letter_strategy"})
RABBITMQ_METRICS: dict[str, frozenset[str]] = {
    "rabbitmq_detailed_queue_messages_ready": _PER_QUEUE,
    "rabbitmq_detailed_queue_messages_unacked": _PER_QUEUE,
    "rabbitmq_detailed_queue_consumers": _PER_QUEUE,
    "rabbitmq_global_messages_received_total": frozenset({"protocol"}),
    "rabbitmq_global_messages_delivered_total": frozenset({"protocol", "queue_type"}),
    "rabbitmq_global_messages_acknowledged_total": frozenset({"protocol", "queue_type"}),
    "rabbitmq_global_messages_dead_lettered_rejected_total": _DEAD_LETTERED,
    "rabbitmq_global_messages_dead_lettered_expired_total": _DEAD_LETTERED,
    "rabbitmq_queues": frozenset(),
    "rabbitmq_connections": frozenset(),
}


def known_series() -> dict[str, frozenset[str]]:
    """Every series name an expression may select, with its labels."""
    series: dict[str, frozenset[str]] = {}
    for name, (kind, own_labels) in CONTRACT.items():
        labels = own_labels | TARGET_LABELS
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    for name in PROCESS_METRICS:
        series[name] = TARGET_LABELS
    for name, rabbit_labels in RABBITMQ_METRICS.items():
        series[name] = rabbit_labels | TARGET_LABELS
    return series


SERIES = known_series()


# --- Loading the dashboards ---

VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def expand_variables(expr: str) -> str:
    """What Prometheus receives when every template variable is set to All (.*)."""
    return VARIABLE.sub(".*", expr)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DASHBOARDS = {path.name: load(path) for path in DASHBOARD_FILES}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        result.append(panel)
        result.extend(panel.get("panels", []))  # a collapsed row's panels
    return result


def all_targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (name, panel, target)
        for name, dashboard in DASHBOARDS.items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def target_id(item: tuple[str, dict[str, Any], dict[str, Any]]) -> str:
    name, panel, target = item
    return f"{name}:{panel.get('id')}{target.get('refId', '')}"


TARGETS = all_targets()


# --- The dashboards ---


def test_the_three_dashboards_are_there() -> None:
    assert set(DASHBOARDS) == {"latency-breakdown.json", "rabbitmq.json", "service-health.json"}


def test_dashboards_are_provisioned_not_imported() -> None:
    uids, titles = set(), set()
    for name, dashboard in DASHBOARDS.items():
        text = (DASHBOARD_DIR / name).read_text()
        assert "${DS_" not in text, f"{name}: import placeholder; reference uid prometheus"
        assert "__inputs" not in dashboard, name
        assert dashboard.get("id") is None, f"{name}: a provisioned dashboard has no id"
        assert dashboard.get("uid"), f"{name}: a fixed uid keeps links stable"
        assert len(dashboard["uid"]) <= 40, name
        assert dashboard["schemaVersion"] >= 39, name
        assert dashboard.get("title"), name
        uids.add(dashboard["uid"])
        titles.add(dashboard["title"])
    assert len(uids) == len(DASHBOARDS), "dashboard uids must be unique"
    assert len(titles) == len(DASHBOARDS), "dashboard titles must be unique"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_is_complete(name: str) -> None:
    dashboard = DASHBOARDS[name]
    ids: set[int] = set()
    for panel in panels(dashboard):
        where = f"{name}: panel {panel.get('id')} {panel.get('title')!r}"
        assert isinstance(panel.get("id"), int), where
        assert panel["id"] not in ids, f"{where}: duplicate id"
        ids.add(panel["id"])
        assert panel["type"] in {"timeseries", "stat"}, where
        assert panel.get("title", "").strip(), f"{where}: no title"
        description = panel.get("description", "")
        assert len(description) >= 40, f"{where}: the description says what it answers"
        assert "?" in description, f"{where}: the description asks its question"
        assert panel.get("datasource") == PROMETHEUS, where
        targets = panel.get("targets", [])
        assert any(t.get("expr", "").strip() for t in targets), f"{where}: no query"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids), where
        assert len(set(ref_ids)) == len(ref_ids), f"{where}: duplicate refId"
        for target in targets:
            assert target.get("datasource") == PROMETHEUS, where
            assert target.get("expr", "").strip(), f"{where}: empty query {target['refId']}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(DASHBOARDS[name]):
        pos = panel["gridPos"]
        assert pos["w"] > 0, panel["title"]
        assert pos["h"] > 0, panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("item", TARGETS, ids=target_id)
def test_expression_reads_only_known_metrics(
    item: tuple[str, dict[str, Any], dict[str, Any]],
) -> None:
    # Validity, labels and legends are checked on real results by test_prometheus_live.py.
    name, panel, target = item
    used = metric_names(expand_variables(target["expr"]))
    assert used, f"{name} {panel['title']!r}: selects no metric"
    assert used <= set(SERIES), f"{name} {panel['title']!r}: unknown {used - set(SERIES)}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables_expand_to_valid_matchers(name: str) -> None:
    dashboard = DASHBOARDS[name]
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    for variable in variables.values():
        assert variable["type"] == "query", variable["name"]
        assert variable.get("datasource") == PROMETHEUS, variable["name"]
        assert variable.get("includeAll") is True, variable["name"]
        assert variable.get("allValue") == ".*", variable["name"]
        query = variable["query"] if isinstance(variable["query"], str) else ""
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"{variable['name']}: label_values(metric, label) expected, got {query!r}"
        metric, label = match.groups()
        labels = SERIES.get(metric)
        assert labels is not None, f"{variable['name']}: unknown metric {metric!r}"
        assert label in labels, f"{variable['name']}: {metric} has no label {label!r}"
    for panel in panels(dashboard):
        texts = [t["expr"] for t in panel["targets"]]
        for text in texts:
            for match in VARIABLE.finditer(text):
                used = next(g for g in match.groups() if g)
                assert used in variables, f"{panel['title']!r} uses undefined ${used}"
                before = text[: match.start()]
                assert before.endswith('=~"'), (
                    f"{panel['title']!r}: ${used} must stand alone in a regex matcher "
                    f'(label=~"${used}") so that All (.*) keeps the expression valid'
                )
        if "repeat" in panel:
            assert panel["repeat"] in variables, panel["title"]


def test_histogram_panels_ask_for_exemplars() -> None:
    histogram_targets = 0
    for name, panel, target in TARGETS:
        if panel["type"] != "timeseries":
            continue  # a stat panel draws no exemplars
        if re.search(r"\w+_bucket\b", target["expr"]):
            histogram_targets += 1
            assert target.get("exemplar") is True, f"{name} {panel['title']!r}"
    assert histogram_targets >= 6


def test_latency_breakdown_answers_where_the_time_goes() -> None:
    dashboard = DASHBOARDS["latency-breakdown.json"]
    all_panels = panels(dashboard)

    def metrics_of(panel: dict[str, Any]) -> set[str]:
        return {m for target in panel["targets"] for m in metric_names(target["expr"])}

    stacked = [
        p
        for p in all_panels
        if p["type"] == "timeseries"
        and p["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    ]
    parts = {"rpc_queue_wait_seconds", "rpc_overhead_seconds", "rpc_handler_duration_seconds"}
    breakdown = [p for p in stacked if {f"{m}_sum" for m in parts} <= metrics_of(p)]
    assert breakdown, "a stacked panel splits each call into queue wait, transport and handler"
    assert breakdown[0].get("repeat") == "method", "one stacked breakdown per method"
    for target in breakdown[0]["targets"]:
        assert "sum by (method)" in target["expr"], target["expr"]

    p99 = {
        m
        for p in all_panels
        for t in p["targets"]
        if "histogram_quantile(0.99" in t["expr"]
        for m in parts | {"http_server_request_duration_seconds", "rpc_client_duration_seconds"}
        if f"{m}_bucket" in t["expr"]
    }
    assert p99 == parts | {"http_server_request_duration_seconds", "rpc_client_duration_seconds"}

    # Queue or wire: the queue's share (its dwell) beside the wire's (overhead less dwell).
    stats = {p["title"]: p for p in all_panels if p["type"] == "stat"}
    queue, wire = stats["Queue share of RPC time (5m)"], stats["Wire share of RPC time (5m)"]
    assert metrics_of(queue) == {"rpc_queue_dwell_seconds_sum", "rpc_client_duration_seconds_sum"}
    assert metrics_of(wire) == metrics_of(queue) | {"rpc_overhead_seconds_sum"}
    assert queue["gridPos"]["y"] == wire["gridPos"]["y"]
    assert queue["gridPos"]["x"] + queue["gridPos"]["w"] == wire["gridPos"]["x"]

    http = [
        t["expr"]
        for p in all_panels
        for t in p["targets"]
        if "http_server_request_duration_seconds" in t["expr"]
    ]
    assert any("by (route" in e and "status" in e and "_count" in e for e in http), "rate"
    assert any('status=~"5.."' in e and "by (route)" in e for e in http), "error ratio"
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}, sum by (route, le)" in e for e in http)


def test_rabbitmq_dashboard_covers_the_broker() -> None:
    used = {m for _, _, target in TARGETS for m in metric_names(target["expr"])}
    assert set(RABBITMQ_METRICS) <= used, set(RABBITMQ_METRICS) - used


# --- Provisioning ---


def test_datasources_link_exemplars_to_jaeger() -> None:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    sources = {source["uid"]: source for source in config["datasources"]}
    prometheus, jaeger = sources["prometheus"], sources["jaeger"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "${PROMETHEUS_URL}"
    assert prometheus.get("isDefault") is True
    destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "jaeger"}.items() <= destinations[0].items()
    assert jaeger["type"] == "jaeger"
    assert jaeger["url"] == "${JAEGER_URL}"
    assert sum(bool(source.get("isDefault")) for source in config["datasources"]) == 1


def test_dashboard_provider_loads_the_folder() -> None:
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider.get("allowUiUpdates") is False, "the JSON files are the one source"
