"""RabbitMQ's management API (plugin ``rabbitmq_management``, port 15672), for what the dev stack
and the tests set on the broker: virtual hosts, permissions, policies.

One HTTP call takes milliseconds; ``rabbitmqctl`` starts an Erlang VM for each command (about
0.8 s and 0.6 s of CPU on the 2-core machine), which the tests paid three times a test for their
virtual host. Where the API cannot be reached (the plugin off), :func:`broker_command` falls back
to ``rabbitmqctl``, as before.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

PORT = 15672
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


class ManagementUnreachable(OSError):
    """Nothing answers the management API at the broker's host (the plugin is off)."""


def call(amqp_url: str, method: str, path: str, body: Any = None) -> None:
    """``method`` on ``/api/{path}`` of the broker of ``amqp_url``, as its user; raises
    :class:`ManagementUnreachable` when nothing answers there, ``urllib.error.HTTPError`` when
    the API refuses."""
    parts = urllib.parse.urlsplit(amqp_url)
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    request = urllib.request.Request(
        f"http://{parts.hostname or '127.0.0.1'}:{PORT}/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - http to the broker
            return
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError) as exc:
        raise ManagementUnreachable(f"management API at {request.full_url}: {exc}") from exc


def quote(name: str) -> str:
    """A virtual host's or user's name as one path segment (``/`` is ``%2F``)."""
    return urllib.parse.quote(name, safe="")


def broker_command(amqp_url: str, api: tuple[str, str, Any], ctl: list[str]) -> None:
    """One change to the broker: ``api`` (method, path, body) through the management API, or,
    where the API cannot be reached, ``rabbitmqctl -q`` with ``ctl``. Raises
    ``subprocess.CalledProcessError`` (or ``OSError`` without rabbitmqctl) when neither can."""
    try:
        call(amqp_url, *api)
    except ManagementUnreachable:
        subprocess.run(["rabbitmqctl", "-q", *ctl], check=True, capture_output=True, timeout=60)
