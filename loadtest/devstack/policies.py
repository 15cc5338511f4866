"""The broker policies the dev stack sets on its virtual host before the services start.

``rpc-ae`` gives the ``rpc`` exchange its alternate exchange (``rpc.unroutable``,
broker/rpc/unroutable.py), so an unroutable request is kept and answered whoever sent it. A
policy, not an exchange argument: it applies to an ``rpc`` that exists already. Set through the
management API (fast; the plugin ``rabbitmq_management``), else ``rabbitmqctl``; if neither
can, the stack runs without it (unroutable requests of drama-service are still returned, kept
and answered 503) and says how to set it.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from broker.rpc import Topology
from broker.rpc.unroutable import ae_policy

log = logging.getLogger(__name__)

NAME = "rpc-ae"
MANAGEMENT_PORT = 15672


def set_ae_policy(amqp_url: str, topology: Topology | None = None) -> bool:
    """Set ``rpc-ae`` on the virtual host of ``amqp_url``; whether it could."""
    spec = ae_policy(topology or Topology())
    parts = urllib.parse.urlsplit(amqp_url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    url = (
        f"http://{parts.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/api/policies/"
        f"{urllib.parse.quote(vhost, safe='')}/{NAME}"
    )
    request = urllib.request.Request(
        url,
        data=json.dumps(spec).encode(),
        method="PUT",
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            return True
    except (urllib.error.URLError, OSError) as exc:
        reason = exc
    command = [
        "rabbitmqctl",
        "-q",
        "set_policy",
        "-p",
        vhost,
        NAME,
        str(spec["pattern"]),
        json.dumps(spec["definition"]),
        "--apply-to",
        "exchanges",
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        log.warning(
            "no alternate exchange on rpc (management API: %s; rabbitmqctl failed too): "
            "unroutable requests of other publishers are dropped; set it with: %s",
            reason,
            shlex.join(command),
        )
        return False
    return True
