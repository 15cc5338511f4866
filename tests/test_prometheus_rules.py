"""Prometheus configuration, recording and alert rules under observability/prometheus.

promtool (Debian's `prometheus` package, 2.42) checks the configuration and the rules and runs
the rule unit tests; every alert must have a test where it fires and one where it stays silent.
The RabbitMQ metric names the rules use are looked up on this machine's rabbitmq_prometheus
endpoints (the plugin must be enabled). A real Prometheus running these files against the
services is tests/test_prometheus_live.py's job.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parent.parent / "observability" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
ALERTS = PROM_DIR / "rules" / "alerts.yml"
JOBS = ("drama-service", "episode-service", "stream-service", "rabbitmq", "rabbitmq-queues")
INSTALL_HINT = (
    "`.ci/run` installs it (apt-get install -y prometheus: /usr/bin/prometheus, /usr/bin/promtool)"
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_binary("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,  # promtool's rule tests take seconds alone, minutes on a loaded machine
        check=False,
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def _rule_exprs() -> list[str]:
    return [
        str(rule["expr"])
        for path in RULE_FILES
        for group in _load(path)["groups"]
        for rule in group["rules"]
    ]


def _targets(path: Path) -> dict[str, list[str]]:
    """service label -> targets of a file_sd file."""
    return {group["labels"]["service"]: group["targets"] for group in _load(path)}


def _get(address: str, path: str) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.integration
def test_promtool_check_config() -> None:
    result = _promtool("check", "config", CONFIG)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # A missing file_sd file is only a warning for promtool, but means no targets at all.
    assert "WARNING" not in output, output


@pytest.mark.integration
def test_compose_targets_replace_the_local_ones(tmp_path: Path) -> None:
    """targets.compose.yml names the same services and passes promtool in place of targets.yml."""
    local = _targets(PROM_DIR / "targets.yml")
    compose = _targets(PROM_DIR / "targets.compose.yml")
    assert set(local) == set(compose) == {job for job in JOBS if job != "rabbitmq-queues"}
    assert all(target.startswith("127.0.0.1:") for targets in local.values() for target in targets)
    ports = {service: [t.rsplit(":", 1)[1] for t in targets] for service, targets in local.items()}
    assert ports == {
        service: [t.rsplit(":", 1)[1] for t in targets] for service, targets in compose.items()
    }, "compose and local targets should differ in host names only"

    copy = tmp_path / "prometheus"
    shutil.copytree(PROM_DIR, copy)
    shutil.copyfile(PROM_DIR / "targets.compose.yml", copy / "targets.yml")
    result = _promtool("check", "config", copy / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_jobs() -> None:
    config = _load(CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert tuple(jobs) == JOBS
    assert config["global"]["scrape_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics"
    assert jobs["rabbitmq-queues"]["metrics_path"] == "/metrics/detailed"


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    assert RULE_FILES, f"no rule files in {PROM_DIR / 'rules'}"
    result = _promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_promtool_test_rules() -> None:
    assert TEST_FILES, f"no rule tests in {PROM_DIR / 'tests'}"
    result = _promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_in_a_test() -> None:
    """Each alert has a unit test where it fires and one where it does not; no test names an
    alert that does not exist (it would stay silent, and pass, for the wrong reason)."""
    alerts = {rule["alert"] for rule in _alert_rules()}
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in _load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert not (fires | silent) - alerts, "tests name alerts that alerts.yml does not define"
    assert not alerts - fires, f"alerts without a test where they fire: {sorted(alerts - fires)}"
    assert not alerts - silent, f"alerts without a silent test: {sorted(alerts - silent)}"


def test_every_alert_has_severity_and_annotations() -> None:
    for rule in _alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


@pytest.mark.integration
def test_rabbitmq_metric_names_exist_on_the_broker() -> None:
    """Every rabbitmq_* metric in the rules is served by the endpoint its job scrapes."""
    config = _load(CONFIG)
    (address,) = _targets(PROM_DIR / "targets.yml")["rabbitmq"]
    served: set[str] = set()
    for job in config["scrape_configs"]:
        if not job["job_name"].startswith("rabbitmq"):
            continue
        params = "&".join(
            f"{name}={value}" for name, values in job.get("params", {}).items() for value in values
        )
        path = job["metrics_path"] + (f"?{params}" if params else "")
        try:
            status, body = _get(address, path)
        except OSError as exc:
            pytest.fail(
                f"RabbitMQ's Prometheus endpoint {address}{path} does not answer ({exc}): "
                "rabbitmq-plugins enable rabbitmq_prometheus",
                pytrace=False,
            )
        assert status == 200, f"{address}{path}: HTTP {status}"
        served |= set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.MULTILINE))
    used = {name for expr in _rule_exprs() for name in re.findall(r"(?<![\w:])rabbitmq_\w+", expr)}
    assert used, "the rules use no RabbitMQ metric"
    assert not used - served, f"not served by RabbitMQ: {sorted(used - served)}"
