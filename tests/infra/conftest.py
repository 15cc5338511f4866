"""Helpers for the offline checks of the deploy files: nothing here needs a cluster or a cloud."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a checker; the test fails with its output when it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        command = " ".join(map(str, args))
        pytest.fail(f"{command} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov from its own venv (make tools); missing means `make test` was bypassed: fail."""
    path = TOOLS / "checkov" / "bin" / "checkov"
    assert path.exists(), "checkov is missing: run `make tools`"
    return path
