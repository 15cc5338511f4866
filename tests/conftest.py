"""Shared fixtures: the real RabbitMQ and PostgreSQL of this machine, isolated per test; and
the two tiers.

A test is in the **integration** tier (``make test``; ``-m integration``, run in parallel by
pytest-xdist) when it asks for one of ``INTEGRATION_FIXTURES`` (marked here, at collection) or
its module says ``pytestmark = pytest.mark.integration``. Every other test is in the **unit**
tier (``make unit``): in-process apps, parsers, shapes; no broker, no database, no subprocess.
A unit test that connects to RabbitMQ or PostgreSQL, or starts a process, fails and says to
mark it, so a new test cannot land in the wrong tier unnoticed. Unit tests on the in-memory
RPC transport belong to the unit tier: they need no mark.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aiohttp import web

from broker.rpc import Topology
from loadtest.devstack.config import StackConfig
from loadtest.devstack.config import free_port as free_port  # noqa: PLC0414 - re-exported for the tests
from loadtest.devstack.config import vhost as rabbitmq_vhost
from loadtest.devstack.stack import Stack
from tests.otlp import OtlpReceiver
from tests.tiers import (  # noqa: F401 - the tiers' hooks, registered by being here
    pytest_collection_modifyitems,
    pytest_runtest_call,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The session is over: its objects are left to the process's exit, not collected. After
    pytest's own last collections (its unraisable-exception check runs before this), the
    interpreter's collections at exit took 2.4 s a process (~800,000 objects in a unit-tier
    worker), paid by every xdist worker of every step of ``make test`` before it could end; with
    the objects frozen, 0.08 s."""
    gc.freeze()


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; fail if ``process`` exits first
    or ``timeout`` passes (readiness by the port, not by what the process prints)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.02)  # a probe's interval; the deadline bounds the wait
        else:
            return
    pytest.fail(f"{process.args!r} {'exited' if process.poll() is not None else 'did not listen'}")


@contextmanager
def running_sink(out: Path) -> Iterator[str]:
    """``python -m loadtest sink --out FILE`` on a free port, and its URL; on exit it is
    stopped (SIGTERM), has exited 0, and FILE is complete."""
    port = free_port()
    command = [sys.executable, "-m", "loadtest", "sink", "--port", str(port), "--out", str(out)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            wait_for_port(port, process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.communicate(timeout=10)
    assert process.returncode == 0


class LogWaiter(logging.Handler):
    """Sets ``seen`` when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@contextmanager
def log_waiters(logger_name: str, *texts: str) -> Iterator[tuple[LogWaiter, ...]]:
    """A LogWaiter for each text on the logger, which logs INFO records meanwhile."""
    waiters = tuple(LogWaiter(text) for text in texts)
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.INFO)
    for waiter in waiters:
        logger.addHandler(waiter)
    try:
        yield waiters
    finally:
        logger.setLevel(level)
        for waiter in waiters:
            logger.removeHandler(waiter)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """An OTLP/HTTP receiver on a free port, and its URL (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    otlp = OtlpReceiver()
    runner = web.AppRunner(otlp.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield otlp, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
def amqp_url(request: pytest.FixtureRequest) -> str:
    """The broker's URL; with ``@pytest.mark.own_vhost``, a vhost of this test alone (the
    ``vhost`` fixture), for a test that closes every connection of its vhost while other
    tests run in parallel. Not with ``stack_config``, which puts its own vhost in the URL."""
    if request.node.get_closest_marker("own_vhost"):
        name: str = request.getfixturevalue("vhost")
        return f"{AMQP_URL.rstrip('/')}/{name}"
    return AMQP_URL


@pytest.fixture
async def topology(amqp_url: str) -> AsyncIterator[Topology]:
    """Exchanges and dead-letter queue of this test alone, deleted afterwards."""
    uid = uuid.uuid4().hex[:8]
    topo = Topology(
        exchange=f"test.{uid}.rpc",
        dead_letter_exchange=f"test.{uid}.rpc.dlx",
        dead_letter_queue=f"test.{uid}.rpc.dead",
        control_exchange=f"test.{uid}.rpc.control",
        cancel_exchange=f"test.{uid}.rpc.cancel",
        unroutable_exchange=f"test.{uid}.rpc.unroutable",
    )
    yield topo
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(topo.exchange)
        await channel.exchange_delete(topo.dead_letter_exchange)
        await channel.queue_delete(topo.dead_letter_queue)
        await channel.exchange_delete(topo.control_exchange)
        await channel.exchange_delete(topo.cancel_exchange)
        await channel.exchange_delete(topo.unroutable_exchange)
        await channel.queue_delete(topo.unroutable_exchange)


@pytest.fixture
async def queue_name(amqp_url: str) -> AsyncIterator[str]:
    """A worker queue name of this test alone, deleted afterwards."""
    name = f"test.{uuid.uuid4().hex[:8]}.rpc.worker"
    yield name
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test alone, for services running as separate processes."""
    with rabbitmq_vhost(f"test-{uuid.uuid4().hex[:8]}", AMQP_URL) as name:
        yield name


StackConfigFactory = Callable[..., StackConfig]


@pytest.fixture
def stack_config(tmp_path: Path, vhost: str, amqp_url: str) -> StackConfigFactory:
    """A StackConfig of this test alone (its vhost, free ports, its workdir); keyword
    arguments override the fields."""

    def factory(**overrides: Any) -> StackConfig:
        fields: dict[str, Any] = {
            "amqp_url": amqp_url.rstrip("/") + f"/{vhost}",
            "http_port": free_port(),
            "s3_port": free_port(),
            "episode_metrics_port": free_port(),
            "stream_metrics_port": free_port(),
            "episode_rpc_port": free_port(),
            "stream_rpc_port": free_port(),
            "workdir": tmp_path / "run",
            "media_dramas": 1,
        }
        return StackConfig(**(fields | overrides))

    return factory


@pytest.fixture
async def stack(stack_config: StackConfigFactory) -> AsyncIterator[Stack]:
    """The three services as processes, spans sampled (for metric exemplars) but not exported."""
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "REQUEST_LOG": "sampled",  # request lines with the trace ids the exemplars carry
    }
    async with Stack(stack_config(env=env)) as running:
        yield running
