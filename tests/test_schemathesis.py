"""The OpenAPI document against the server that serves it: schemathesis, every check.

Runs schemathesis's CLI (examples, coverage, fuzzing and stateful phases, ``--checks all``)
against drama-service of a running stack: every response must match the document, every
request the document calls valid must be accepted and every invalid one refused.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from loadtest.devstack.stack import Stack

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.timeout(240)
async def test_openapi_document_matches_the_server(stack: Stack) -> None:
    assert SCHEMATHESIS.exists(), "schemathesis is a dev dependency (pyproject.toml)"
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{stack.config.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "50",
        "--seed",
        "19",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Its example database and reports go to the test's own directory.
        cwd=stack.config.workdir,
        env={"HOME": str(stack.config.workdir), "PATH": "/usr/bin:/bin"},
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    assert "No issues found" in text, text[-4000:]
