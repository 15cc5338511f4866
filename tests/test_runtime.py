"""The process plumbing: JSON log lines and settings errors."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys

import pytest

from broker.service import ConfigError, Env
from broker.service.runtime import JsonFormatter, tune_gc


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
