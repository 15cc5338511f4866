"""A real Prometheus, with the project's own config and rules, scraping the three services and
RabbitMQ after real traffic: every dashboard and rule expression returns data, exemplars too."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from loadtest.devstack.stack import Stack
from tests.conftest import free_port
from tests.promql import metric_names
from tests.test_metrics import send_malformed

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "observability/prometheus"
DASHBOARDS = sorted((ROOT / "observability/grafana/dashboards").glob("*.json"))


@pytest.fixture
async def prometheus(tmp_path: Path, stack: Stack) -> AsyncIterator[str]:
    """Prometheus on the project's files; only the targets (and, to be quick, the intervals)
    differ from what a local run uses."""
    config_dir = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, config_dir)
    cfg = stack.config
    targets = [
        {"targets": [f"127.0.0.1:{cfg.http_port}"], "labels": {"service": "drama-service"}},
        {
            "targets": [f"127.0.0.1:{cfg.episode_metrics_port}"],
            "labels": {"service": "episode-service"},
        },
        {
            "targets": [f"127.0.0.1:{cfg.stream_metrics_port}"],
            "labels": {"service": "stream-service"},
        },
        {"targets": ["127.0.0.1:15692"], "labels": {"service": "rabbitmq"}},
    ]
    (config_dir / "targets.yml").write_text(yaml.safe_dump(targets))
    main = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    main["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(main))
    for rules in (config_dir / "rules").glob("*.yml"):
        loaded = yaml.safe_load(rules.read_text())
        for group in loaded["groups"]:
            group["interval"] = "1s"
        rules.write_text(yaml.safe_dump(loaded))
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: .ci/run installs Debian's prometheus package"
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220 - a server process, waited for below
            [
                binary,
                f"--config.file={config_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                await until(http, f"{url}/-/ready", lambda status, _: status == 200)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


async def until(http: aiohttp.ClientSession, url: str, ok: Any, timeout: float = 60) -> Any:
    """Poll an external process's HTTP API until ``ok(status, body)``; its last body."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url) as response:
                    body = await response.read()
                    if ok(response.status, body):
                        return json.loads(body) if body.startswith(b"{") else body
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)


async def query(http: aiohttp.ClientSession, prometheus: str, expr: str) -> dict[str, Any]:
    async with http.get(f"{prometheus}/api/v1/query", params={"query": expr}) as response:
        body: dict[str, Any] = await response.json()
    assert body["status"] == "success", (expr, body)
    return body


def dashboard_expressions() -> list[tuple[str, str, set[str]]]:
    """(panel, expression with every variable at All, labels its legend names)."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = re.sub(r"\$\{?\w+\}?", ".*", target["expr"])  # variables: All
                legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                found.append((f"{path.stem}: {panel['title']}", expr, legend))
    return found


def rule_expressions() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    recording, alerts = [], []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recording.append((rule["record"], rule["expr"]))
                else:
                    alerts.append((rule["alert"], rule["expr"]))
    return recording, alerts


async def traffic(stack: Stack, seconds: float) -> None:
    """Good requests, client errors and a dead letter, spread over a few scrapes."""
    base = stack.config.base_url
    await send_malformed(stack.config.amqp_url)
    async with aiohttp.ClientSession() as http, asyncio.timeout(seconds + 30):
        deadline = asyncio.get_running_loop().time() + seconds
        n = 0
        while asyncio.get_running_loop().time() < deadline:
            for path in (f"/dramas/{n % 20 + 1}", "/dramas?limit=5", "/dramas/999", "/dramas/x"):
                async with http.get(base + path) as response:
                    await response.read()
            n += 1


async def test_every_dashboard_and_rule_expression_returns_data(
    stack: Stack, prometheus: str
) -> None:
    await traffic(stack, seconds=6)
    recording, alerts = rule_expressions()
    async with aiohttp.ClientSession() as http:
        # Every target scraped, and every recording rule evaluated, at least once after traffic.
        async with asyncio.timeout(60):
            while True:
                pending = [
                    name
                    for name, _ in recording
                    if not (await query(http, prometheus, name))["data"]["result"]
                ]
                targets = (await query(http, prometheus, "up"))["data"]["result"]
                if not pending and targets and all(t["value"][1] == "1" for t in targets):
                    break
                await asyncio.sleep(0.5)
        jobs = {t["metric"]["job"] for t in targets}
        assert jobs >= {
            "drama-service",
            "episode-service",
            "stream-service",
            "rabbitmq",
            "rabbitmq-queues",
        }
        empty, unlabelled = [], []
        expressions = dashboard_expressions() + [(n, e, set()) for n, e in recording]
        for where, expr, legend in expressions:
            result = (await query(http, prometheus, expr))["data"]["result"]
            if not result:
                empty.append((where, expr))
            # A legend naming a label the series do not carry shows a blank in Grafana.
            unlabelled += [
                (where, legend - set(r["metric"])) for r in result if legend - set(r["metric"])
            ]
        assert not empty, "expressions that returned no data:\n" + "\n".join(map(str, empty))
        assert not unlabelled, f"legends naming labels the result lacks: {unlabelled}"
        # An alert's expression is empty while all is well: it must be valid PromQL, and every
        # series it reads must exist, so that no alert watches a name nothing exports.
        missing = []
        for alert, expr in alerts:
            await query(http, prometheus, expr)
            for name in metric_names(expr):
                if not (await query(http, prometheus, f"count({name})"))["data"]["result"]:
                    missing.append((alert, name))
        assert not missing, f"alerts reading series that do not exist: {missing}"
        # Exemplars reached Prometheus, with real trace ids.
        async with http.get(
            f"{prometheus}/api/v1/query_exemplars",
            params={"query": "rpc_client_duration_seconds_bucket", "start": "0"},
        ) as response:
            exemplars = (await response.json())["data"]
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    assert trace_ids
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
