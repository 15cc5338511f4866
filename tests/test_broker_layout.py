"""broker/'s shape: small modules, an export list that is what the services use, no reaching
into another module's privates. Reads the source; starts one process (what stream-service loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import broker

ROOT = Path(__file__).resolve().parent.parent
BROKER = ROOT / "broker"
SERVICES = ("drama", "episode", "stream", "catalog")
MAX_LINES = 400

# What drama/, episode/, stream/ and catalog/ import from `broker`, and so all it exports.
# Tests and tools import from broker.rpc, broker.telemetry and broker.service.
SERVICES_USE = [
    "BUCKETS",
    "AmqpRpcClient",
    "BadRequest",
    "ConfigError",
    "Env",
    "GuardedRpcClient",
    "HandlerError",
    "HttpRpcClient",
    "NotFound",
    "PresetTraceIds",
    "ReadCache",
    "RepeatedLog",
    "RpcClient",
    "RpcNotFound",
    "RpcRemoteError",
    "RpcRemoteUnavailable",
    "RpcTimeout",
    "RpcUnavailable",
    "RpcUnroutable",
    "RpcWorker",
    "SqlStore",
    "WorkerSettings",
    "amqp_url_from_env",
    "collect_timings",
    "dependency_unavailable",
    "exemplar",
    "metrics_handler",
    "recorded_span",
    "redact_url",
    "request_logged",
    "service_main",
    "serving_worker",
    "stop_event",
]


def _modules(top: Path) -> list[Path]:
    return sorted(top.rglob("*.py"))


def test_no_module_of_broker_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in _modules(BROKER)
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by concern (at most {MAX_LINES} lines a module)"


def test_broker_exports_what_the_services_use_and_nothing_else() -> None:
    used: set[str] = set()
    for service in SERVICES:
        for path in _modules(ROOT / service):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "broker":
                    used.update(alias.name for alias in node.names)
    assert sorted(broker.__all__) == sorted(SERVICES_USE)
    assert used == set(SERVICES_USE), "a service imports another name from broker: list it here"


def test_no_module_imports_another_modules_privates() -> None:
    reaches = []
    for path in [*_modules(BROKER), *(p for s in SERVICES for p in _modules(ROOT / s))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("broker"):
                module = node.module or ""
                names = [alias.name for alias in node.names]
                if any(part.startswith("_") for part in module.split(".")) or any(
                    name.startswith("_") for name in names
                ):
                    reaches.append(f"{path.relative_to(ROOT)}: from {module} import {names}")
    assert reaches == []


# Where broker/ still reads a library's privates, and why: each goes when its reason does.
LIBRARY_PRIVATES = {
    # aiormq drops returns on a channel without confirms (the module's docstring).
    "broker/rpc/returns.py": {"_get_frame", "_read_content", "_on_return_frame"},
    # The lean spans and their encoder, on probation against the stock SDK (issue 18).
    # (broker/telemetry/spans_check.py names what spans.py reads, as strings, to check at start.)
    "broker/telemetry/spans.py": {"_immutable", "_on_ending", "_set_items"},
    "broker/telemetry/otlp_encode.py": {"_events", "_links"},
}


def test_no_module_reads_another_objects_privates() -> None:
    reaches = []
    for path in _modules(BROKER):
        allowed = LIBRARY_PRIVATES.get(str(path.relative_to(ROOT)), set()) | {"_replace"}
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
                and node.attr not in allowed
            ):
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert reaches == []


@pytest.mark.integration  # a process of its own: this one has SQLAlchemy loaded already
def test_stream_service_does_not_load_sqlalchemy() -> None:
    """stream-service has no database: `broker` loads SQLAlchemy on first use of SqlStore only
    (0.5 CPU-s and 19 MiB less a stream-service process)."""
    probe = (
        "import sys, stream.__main__; print(sorted(m for m in sys.modules if 'sqlalchemy' in m))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout[:500]
    assert broker.SqlStore.__module__ == "broker.service.db"  # still there, on first use
