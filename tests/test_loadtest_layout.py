"""loadtest's shape, held: products in subpackages, no module past 400 lines, no tool in a service.

The import rules between the products (the dev stack knows nothing of the load generator or the
benchmarks, the analyser knows none of them) are import-linter contracts in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTS = {"devstack", "load", "analysis", "bench"}


def test_no_loadtest_module_passes_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "loadtest").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert long == {}, "split these by what they do"


def test_loadtest_is_its_products_and_what_they_share() -> None:
    packages = {p.parent.name for p in (ROOT / "loadtest").glob("*/__init__.py")}
    modules = {p.name for p in (ROOT / "loadtest").glob("*.py")}
    assert packages == PRODUCTS
    assert modules == {"__init__.py", "__main__.py", "cli.py", "otlp.py"}


def test_the_services_ship_no_development_server() -> None:
    for service in ("drama", "episode", "stream", "catalog"):
        assert not (ROOT / service / "local_s3.py").exists()
