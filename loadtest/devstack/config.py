"""What a stack is made of: its settings, the processes' names, and what it takes from the host.

`StackConfig` is one stack's ports, working directory and options; the tests make one per test
(each with its own ports and RabbitMQ virtual host: `free_port`, `vhost`), ``make run`` one
from its command line (`loadtest.devstack.run`).
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from loadtest.devstack.management import DEFAULT_URL, broker_command, quote

ROOT = Path(__file__).resolve().parents[2]  # the checkout
# What each process logs once it serves (the embedded S3 prints it on stdout).
READY = {
    "s3": "local S3 listening on",
    "sink": "OTLP sink listening on",
    "episode": "episode-service ready",
    "stream": "stream-service ready",
    "drama": "drama-service listening on",
    "netdelay": "netdelay ready",
    "web": "player listening on",
}
SERVICES = ("episode", "stream", "drama")
# Local-only key pair shared by the embedded S3 and stream-service; it guards nothing real.
LOCAL_S3_KEY = {"AWS_ACCESS_KEY_ID": "local-s3", "AWS_SECRET_ACCESS_KEY": "local-s3-secret"}
# Shared by every stack of the checkout (make run, the tests): encoding 20 dramas costs ~10 s.
MEDIA_CACHE = ROOT / ".run" / "media-cache"
WEB_ROOT = ROOT / "web" / "dist"  # `make web` builds it


class StackError(RuntimeError):
    """A process of the stack failed to start, seed or stop."""


@dataclass
class StackConfig:
    amqp_url: str = DEFAULT_URL
    http_port: int = 8080
    s3_port: int = 9000
    workdir: Path = Path(".run")
    drama_database_url: str | None = None  # default: SQLite files in workdir
    episode_database_url: str | None = None
    seed_dramas: int | None = None  # None: the ~20-drama sample catalogue
    media_dramas: int = 20  # the bucket gets HLS samples for the first N dramas
    # Where the seed keeps each drama's ffmpeg encoding for the next stack (None: encode anew).
    media_cache: Path | None = MEDIA_CACHE
    episode_metrics_port: int = 9101
    stream_metrics_port: int = 9102
    env: Mapping[str, str] = field(default_factory=dict)  # extra variables for every service
    # How drama-service calls the workers; with "http" they serve RPC on these ports too.
    transport: Literal["amqp", "http"] = "amqp"
    episode_rpc_port: int = 9111
    stream_rpc_port: int = 9112
    echo: bool = False  # copy the processes' log lines to stdout
    # With no OTEL_EXPORTER_OTLP_ENDPOINT: an OTLP sink on this port keeps the spans in
    # workdir/spans.jsonl for `python -m loadtest analyze` (None: spans are not exported).
    sink_port: int | None = None
    # Route drama-service and the workers through the delaying proxy (loadtest.devstack.netdelay),
    # so that `python -m loadtest fault --network-delay-ms N` can slow the network.
    network_proxy: bool = False
    # The player (web/dist) and the API on one origin (loadtest/devstack/front.py); None: no player.
    web_port: int | None = None

    @property
    def spans_path(self) -> Path:
        return self.workdir / "spans.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def free_port() -> int:
    """A port nothing listens on now (the caller binds it soon after), below the kernel's
    ephemeral range: every outgoing connection on the machine takes its local port from that
    range, and one took a stack's port between this call and the bind (CI, with the timing
    tests in parallel). Picked at random, so that parallel callers rarely meet."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    for _ in range(200):
        port = random.randrange(10_000, max(low, 10_001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError(f"no free port between 10000 and {low}")


@contextlib.contextmanager
def vhost(name: str, amqp_url: str = DEFAULT_URL) -> Iterator[str]:
    """A RabbitMQ virtual host for the block (the user of ``amqp_url`` may use it): stacks on
    one broker kept apart, since every stack uses the same queue and exchange names. Made and
    deleted through the management API, or rabbitmqctl without it (``management``)."""
    user = urllib.parse.unquote(urllib.parse.urlsplit(amqp_url).username or "guest")
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    broker_command(amqp_url, ("PUT", f"vhosts/{quote(name)}", {}), ["add_vhost", name])
    broker_command(
        amqp_url,
        ("PUT", f"permissions/{quote(name)}/{quote(user)}", everything),
        ["set_permissions", "-p", name, user, ".*", ".*", ".*"],
    )
    try:
        yield name
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError, urllib.error.HTTPError):
            broker_command(
                amqp_url, ("DELETE", f"vhosts/{quote(name)}", None), ["delete_vhost", name]
            )


def check_broker(amqp_url: str) -> None:
    """Raise a one-line :class:`StackError` if nothing listens at the broker's address."""
    parts = urllib.parse.urlsplit(amqp_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        raise StackError(
            f"RabbitMQ is not reachable at {host}:{port}: start it with "
            "'rabbitmq-server -detached' (Debian package rabbitmq-server) or set AMQP_URL"
        ) from None


def venv_python() -> str:
    """This interpreter as a command that works where it is printed: the venv's, relative to
    the current directory when it is inside it (``.venv/bin/python``)."""
    executable = Path(sys.executable)
    try:
        return str(executable.relative_to(Path.cwd()))
    except ValueError:
        return str(executable)
