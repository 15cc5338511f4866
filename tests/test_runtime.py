"""The process plumbing: JSON log lines and settings errors, the broker URL's checks."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.service import ConfigError, Env
from broker.service import amqp_url as checked_amqp_url
from broker.service.runtime import JsonFormatter, tune_gc
from tests.test_amqp_tls import Ca


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "t", "levelname": "INFO", "msg": "hello %s", "args": ("x",)}
    )
    made.__dict__.update(extra)
    return made


def test_json_line_keeps_its_core_fields_and_survives_odd_extras() -> None:
    line = json.loads(JsonFormatter().format(record(time="spoof", odd={(1, 2): 3}, n=5)))
    assert line["message"] == "hello x"
    assert line["level"] == "info"
    assert line["time"] != "spoof"
    assert line["extra.time"] == "spoof"
    assert "odd" in line
    assert "trace_id" not in line  # no span is current


def test_settings_errors_name_the_variable() -> None:
    env = Env({"PREFETCH": "many", "PORT": "70000", "FLAG": "perhaps"})
    with pytest.raises(ConfigError, match="PREFETCH must be an integer"):
        env.integer("PREFETCH", 1)
    with pytest.raises(ConfigError, match=r"PORT must be \[1, 65535\]"):
        env.integer("PORT", 1, low=1, high=65535)
    with pytest.raises(ConfigError, match="FLAG must be true or false"):
        env.flag("FLAG", default=True)
    assert env.integer("UNSET", 7) == 7


@pytest.mark.integration
def test_gc_tuning_freezes_start_up_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before  # 0: Python's settings left alone
        tune_gc(20_000)
        assert gc.get_threshold() == (20_000, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("variable", "value"), [("GC_GEN0_THRESHOLD", "lots"), ("REQUEST_LOG", "some")]
)
@pytest.mark.integration
def test_a_bad_runtime_variable_stops_the_service(variable: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "episode"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert variable in done.stderr


# Here, not beside the TLS tests: a unit test last in that module would tear down its broker
# node under the unit tier's guard (no process may start: rabbitmqctl stop was refused).
def test_plain_amqp_is_refused_off_loopback(tmp_path: Path) -> None:
    assert checked_amqp_url("amqp://u:p@127.0.0.1:5672/") == "amqp://u:p@127.0.0.1:5672/"
    assert checked_amqp_url("amqp://u:p@localhost/") == "amqp://u:p@localhost/"
    with pytest.raises(ConfigError, match="clear text; use amqps://"):
        checked_amqp_url("amqp://u:p@rabbitmq.drama-streaming.svc:5672/")
    with pytest.raises(ConfigError, match="AMQP_CA_FILE is set but AMQP_URL is plain"):
        checked_amqp_url("amqp://u:p@127.0.0.1/", str(tmp_path))
    with pytest.raises(ConfigError, match="is not a readable file"):
        checked_amqp_url("amqps://u:p@broker/", str(tmp_path / "missing.pem"))
    ca = Ca.make("x").write(tmp_path / "ca.pem")
    assert checked_amqp_url("amqps://u:p@broker:5671/v?heartbeat=5", str(ca)) == (
        f"amqps://u:p@broker:5671/v?heartbeat=5&cafile={str(ca).replace('/', '%2F')}"
    )
    # Without a bundle, amqps:// is verified against the system's trust store.
    assert checked_amqp_url("amqps://u:p@broker/") == "amqps://u:p@broker/"
    with pytest.raises(ConfigError, match="no_verify_ssl would accept any certificate"):
        checked_amqp_url("amqps://u:p@broker/?no_verify_ssl=1")
