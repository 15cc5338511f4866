"""The process plumbing: JSON log lines and settings errors."""

from __future__ import annotations

import json
import logging

import pytest

from broker import ConfigError, Env
from broker._runtime import JsonFormatter


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
