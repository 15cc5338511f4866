"""The RabbitMQ users of deploy/rabbitmq/definitions.json can do their job and nothing more.

The definitions file is imported into the real local broker as compose's broker loads it at
boot, into a vhost of this test alone (user names prefixed so as not to collide), and the
services log in with the AMQP_URL passwords compose gives them (deploy/env/*.env): a login
proves that the committed hash matches. Then a real RpcWorker per worker user and an
AmqpRpcClient as drama-service make round trips, and each user is refused what it must not do.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError

import aio_pika
import aiormq.exceptions
import msgspec
import pytest

from broker.errors import RpcUnroutable
from broker.rpc import AmqpRpcClient, RpcWorker
from episode.contract import LIST as EPISODE_LIST
from episode.contract import QUEUE as EPISODE_QUEUE
from loadtest.devstack.management import ManagementUnreachable, broker_command, call, quote
from stream.contract import PRESIGN as STREAM_PRESIGN
from stream.contract import QUEUE as STREAM_QUEUE

from .compose_files import compose_config, env_file
from .conftest import ROOT

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
VHOST = "drama-streaming"
BROKER = "127.0.0.1:5672"
RABBITMQCTL = ["rabbitmqctl", "-q"]
ADMIN_URL = f"amqp://guest:guest@{BROKER}/"  # the broker's administrator here
# The module's broker fixture takes seconds: its tests share one xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("rabbitmq_permissions")
TOPOLOGY_FREE = ("vhosts", "users", "permissions", "policies")


class Ping(msgspec.Struct):
    value: int


@dataclass(frozen=True)
class Broker:
    """The imported definitions: the vhost, and an AMQP URL per service user."""

    vhost: str
    prefix: str

    def url(self, user: str, password: str) -> str:
        name = urllib.parse.quote(self.prefix + user, safe="")
        secret = urllib.parse.quote(password, safe="")
        return f"amqp://{name}:{secret}@{BROKER}/{urllib.parse.quote(self.vhost, safe='')}"

    def service_url(self, service: str) -> str:
        """The service's own URL from compose, pointed at this test's vhost and user."""
        env = compose_config()["services"][service]["environment"]
        parts = urllib.parse.urlsplit(env["AMQP_URL"])
        assert parts.path == f"/{VHOST}", f"{service} does not use vhost {VHOST}: {parts.path}"
        assert parts.username == service, f"{service} logs in as {parts.username}"
        assert parts.password, f"{service}'s AMQP_URL has no password"
        return self.url(service, urllib.parse.unquote(parts.password))


def renamed(definitions: dict[str, Any], vhost: str, prefix: str) -> dict[str, Any]:
    """The definitions with the vhost and every user name replaced (users are broker-wide)."""
    out: dict[str, Any] = dict(definitions)
    out["vhosts"] = [{**v, "name": vhost} for v in out["vhosts"]]
    out["users"] = [{**u, "name": prefix + u["name"]} for u in out["users"]]
    out["permissions"] = [
        {**p, "user": prefix + p["user"], "vhost": vhost} for p in out["permissions"]
    ]
    for section in ("exchanges", "queues", "bindings", "policies"):
        if section in out:
            out[section] = [{**item, "vhost": vhost} for item in out[section]]
    return out


def rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    proc = subprocess.run(
        [*RABBITMQCTL, *args], input=stdin, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)}: {proc.stdout}{proc.stderr}")


@contextlib.contextmanager
def imported(*, topology: bool) -> Iterator[Broker]:
    """The definitions in a vhost of their own; without ``topology`` the workers declare the
    exchanges and queues themselves, as they do where no definitions predeclare them."""
    definitions = json.loads(DEFINITIONS.read_text())
    assert [v["name"] for v in definitions["vhosts"]] == [VHOST]
    if not topology:
        definitions = {k: v for k, v in definitions.items() if k in TOPOLOGY_FREE}
    uid = uuid.uuid4().hex[:8]
    result = Broker(vhost=f"test-{uid}", prefix=f"test-{uid}-")
    try:
        load_definitions(renamed(definitions, result.vhost, result.prefix))
        yield result
    finally:
        # Through the management API where it answers (rabbitmqctl costs ~0.8 s a command).
        for user in definitions["users"]:
            name = result.prefix + user["name"]
            with contextlib.suppress(OSError, subprocess.SubprocessError, HTTPError):
                broker_command(
                    ADMIN_URL, ("DELETE", f"users/{quote(name)}", None), ["delete_user", name]
                )
        with contextlib.suppress(OSError, subprocess.SubprocessError, HTTPError):
            broker_command(
                ADMIN_URL,
                ("DELETE", f"vhosts/{quote(result.vhost)}", None),
                ["delete_vhost", result.vhost],
            )


def load_definitions(definitions: dict[str, Any]) -> None:
    """Import ``definitions`` as a broker loads its file: through the management API
    (``POST /api/definitions``), or ``rabbitmqctl import_definitions`` without it."""
    try:
        call(ADMIN_URL, "POST", "definitions", definitions)
    except ManagementUnreachable:
        rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(definitions))


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """The whole file imported once for the module (each import takes seconds)."""
    with imported(topology=True) as result:
        yield result


@contextlib.asynccontextmanager
async def channel(url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url)
    async with connection:
        yield await connection.channel()


async def echo(ping: Ping) -> Ping:
    return ping


@pytest.mark.parametrize("topology", [True, False], ids=["predeclared", "declared-by-workers"])
async def test_services_round_trip_with_their_own_users(topology: bool) -> None:
    with imported(topology=topology) as broker:
        await round_trips(broker)


async def round_trips(broker: Broker) -> None:
    """A worker per worker user and the client as drama-service: one call to each method."""
    episode = RpcWorker(broker.service_url("episode-service"), EPISODE_QUEUE, grace=1)
    episode.register(EPISODE_LIST, Ping, echo)
    stream = RpcWorker(broker.service_url("stream-service"), STREAM_QUEUE, grace=1)
    stream.register(STREAM_PRESIGN, Ping, echo)
    async with (
        episode,
        stream,
        AmqpRpcClient(broker.service_url("drama-service"), timeout=5) as client,
    ):
        assert await client.call(EPISODE_LIST, Ping(1), Ping) == Ping(1)
        assert await client.call(STREAM_PRESIGN, Ping(2), Ping) == Ping(2)
        # A method nobody serves: the policy's alternate exchange takes it, and drama-service,
        # as its own user, answers it "unroutable" at once (broker/rpc/unroutable.py).
        started = time.monotonic()
        with pytest.raises(RpcUnroutable):
            await client.call("nobody.serves", Ping(3), Ping)
        assert time.monotonic() - started < 4  # answered, not the 5 s timeout


@pytest.mark.integration
async def test_admin_password_matches_its_hash(broker: Broker) -> None:
    admin = env_file("rabbitmq-admin.env")
    url = broker.url(admin["RABBITMQ_ADMIN_USER"], admin["RABBITMQ_ADMIN_PASSWORD"])
    async with channel(url) as chan:
        await chan.declare_queue("", exclusive=True)  # the admin may configure anything


async def assert_refused(url: str, action: str) -> None:
    """``action`` run on a fresh channel of ``url`` is refused by the broker (ACCESS_REFUSED)."""
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await attempt(url, action)


async def attempt(url: str, action: str) -> None:
    verb, _, name = action.rpartition(" ")
    async with channel(url) as chan:
        if verb == "consume":
            queue = await chan.get_queue(name, ensure=False)
            await queue.consume(echo_message, no_ack=True)
        elif verb == "declare queue":
            await chan.declare_queue(name, durable=True)
        elif verb == "delete queue":
            await chan.queue_delete(name)
        elif verb == "declare exchange":
            await chan.declare_exchange(name)
        elif verb == "bind":
            queue = await chan.get_queue(name, ensure=False)
            await queue.bind("rpc", routing_key="stolen")
        else:
            raise AssertionError(f"unknown action {action!r}")


async def echo_message(_message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """Never called: the consume is refused."""


@pytest.mark.parametrize(
    ("service", "action"),
    [
        # drama-service only publishes requests and reads its direct replies.
        ("drama-service", f"consume {EPISODE_QUEUE}"),
        ("drama-service", f"consume {STREAM_QUEUE}"),
        ("drama-service", "consume rpc.dead"),
        ("drama-service", "declare queue drama.requests"),
        ("drama-service", f"delete queue {EPISODE_QUEUE}"),
        ("drama-service", "declare exchange rpc.other"),
        ("drama-service", f"bind {EPISODE_QUEUE}"),
        # a worker serves its own queue, not the other's, and declares nothing else.
        ("episode-service", f"consume {STREAM_QUEUE}"),
        ("episode-service", f"bind {STREAM_QUEUE}"),
        ("episode-service", "declare queue episode.other"),
        ("episode-service", "consume rpc.dead"),
        ("stream-service", f"consume {EPISODE_QUEUE}"),
        ("stream-service", f"delete queue {EPISODE_QUEUE}"),
        ("stream-service", "declare exchange stream.other"),
    ],
)
@pytest.mark.integration
async def test_users_are_refused_what_they_do_not_need(
    broker: Broker, service: str, action: str
) -> None:
    await assert_refused(broker.service_url(service), action)
