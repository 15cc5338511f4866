"""The two test tiers: which tests are ``integration``, and the guard that keeps the rest unit.

Loaded by tests/conftest.py (``pytest_plugins``). A test is marked ``integration`` at collection
when it asks for a fixture of :data:`INTEGRATION_FIXTURES` (directly or through another
fixture), or carries the mark itself (``pytestmark = pytest.mark.integration`` in its module).
Every other test runs its setup and call under a guard: connecting to RabbitMQ's or
PostgreSQL's ports, or starting a process, raises :class:`TierViolation` and fails the test
with a message that says how to mark it; the guard holds whether the test runs in ``make unit``
or ``make test``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Fixtures that reach the real broker, database or processes: a test asking for one is
# integration without a mark of its own.
INTEGRATION_FIXTURES = frozenset(
    {
        "amqp_url",
        "topology",
        "queue_name",
        "vhost",
        "stack_config",
        "stack",
        "pg_url",
        "pg_database",
        "rendered",  # tests/infra: kubectl kustomize
        "checkov",
    }
)
# RabbitMQ (AMQP, AMQPS, management, Prometheus) and PostgreSQL.
GUARDED_PORTS = frozenset({5672, 5671, 15672, 15692, 5432})
MARK_IT = (
    "is a unit test (no integration mark) but {what}: mark it integration "
    "(`pytestmark = pytest.mark.integration` in its module, or @pytest.mark.integration), "
    "or use in-process pieces (aiohttp_client, the in-memory transport)"
)

_violations = pytest.StashKey[list[str]]()


class TierViolation(Exception):  # not an OSError, so no retry loop swallows it
    """A unit test reached for the broker, the database or a process."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & INTEGRATION_FIXTURES and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


@contextmanager
def _guard(item: pytest.Item) -> Iterator[None]:
    """Within the block, a connect to a guarded port or a new process raises TierViolation."""
    found = item.stash.setdefault(_violations, [])

    def refuse(what: str) -> TierViolation:
        message = f"{item.nodeid} " + MARK_IT.format(what=what)
        found.append(message)
        return TierViolation(message)

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def port_of(address: Any) -> int | None:
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            return address[1]
        return None

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if port_of(address) in GUARDED_PORTS:
            raise refuse(f"connects to {address!r}")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if port_of(address) in GUARDED_PORTS:
            raise refuse(f"connects to {address!r}")
        return connect_ex(self, address)

    def guarded_execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any) -> None:
        raise refuse(f"starts a process ({args!r})")

    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    subprocess.Popen._execute_child = guarded_execute_child  # type: ignore[attr-defined]
    try:
        yield
    finally:
        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        subprocess.Popen._execute_child = execute_child  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    """A unit test's setup (its fixtures of any scope) runs guarded."""
    if item.get_closest_marker("integration"):
        return (yield)
    with _guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """A unit test's call runs guarded. Its teardown does not: it also ends the fixtures of
    wider scope that the next test does not share, such as a module's broker node that the
    module's integration tests started before a unit test came last; what a unit test's own
    fixtures start was refused at their setup."""
    if item.get_closest_marker("integration"):
        return (yield)
    with _guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A violation the code under test caught (say, a retry loop) still fails the test."""
    report: pytest.TestReport = yield
    found = item.stash.get(_violations, [])
    if found and report.passed and call.when == "call":
        report.outcome = "failed"
        report.longrepr = "\n".join(found)
    return report
