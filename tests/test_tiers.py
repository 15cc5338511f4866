"""The tier guard (tests/tiers.py) in a pytest session of its own: a unit test that starts a
process fails and says how to mark it; a module whose integration tests share a fixture that
starts processes may end with a unit test, whose teardown then ends that fixture unguarded."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# The inner session's conftest: the tiers' hooks, as tests/conftest.py registers them.
CONFTEST = """
from tests.tiers import (
    pytest_collection_modifyitems,
    pytest_runtest_call,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)
"""
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def run_inner(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    """``source`` as the inner session's one test module, run with the tiers' hooks."""
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


@pytest.mark.integration  # the inner session starts processes (true, in a fixture's teardown)
def test_a_unit_test_that_starts_a_process_fails_and_says_how_to_mark_it(
    pytester: pytest.Pytester,
) -> None:
    result = run_inner(
        pytester,
        """
        import subprocess

        def test_starts_a_process():
            subprocess.run(["true"], check=True)
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*is a unit test (no integration mark) but starts a process*"])


@pytest.mark.integration
def test_a_unit_test_last_in_a_module_ends_its_shared_fixture_unguarded(
    pytester: pytest.Pytester,
) -> None:
    result = run_inner(
        pytester,
        """
        import subprocess
        import pytest

        @pytest.fixture(scope="module")
        def node():
            yield
            subprocess.run(["true"], check=True)  # a broker node stopped at the module's end

        @pytest.mark.integration
        def test_uses_the_node(node):
            pass

        def test_unit_last():
            pass
        """,
    )
    result.assert_outcomes(passed=2)
