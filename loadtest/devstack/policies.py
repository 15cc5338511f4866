"""The broker policies the dev stack sets on its virtual host before the services start.

``rpc-ae`` gives the ``rpc`` exchange its alternate exchange (``rpc.unroutable``,
broker/rpc/unroutable.py), so an unroutable request is kept and answered whoever sent it. A
policy, not an exchange argument: it applies to an ``rpc`` that exists already. Set through the
management API (fast; the plugin ``rabbitmq_management``), else ``rabbitmqctl``; if neither
can, the stack runs without it (unroutable requests of drama-service are still returned, kept
and answered 503) and says how to set it.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import urllib.error
import urllib.parse

from broker.rpc import Topology
from broker.rpc.unroutable import ae_policy
from loadtest.devstack.management import broker_command, quote

log = logging.getLogger(__name__)

NAME = "rpc-ae"


def set_ae_policy(amqp_url: str, topology: Topology | None = None) -> bool:
    """Set ``rpc-ae`` on the virtual host of ``amqp_url``; whether it could."""
    spec = ae_policy(topology or Topology())
    path = urllib.parse.urlsplit(amqp_url).path
    vhost = urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"
    command = [
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
        broker_command(amqp_url, ("PUT", f"policies/{quote(vhost)}/{NAME}", spec), command)
    except (OSError, subprocess.SubprocessError, urllib.error.HTTPError) as exc:
        log.warning(
            "no alternate exchange on rpc (%s): unroutable requests of other publishers are "
            "dropped; set it with: %s",
            exc,
            shlex.join(["rabbitmqctl", *command]),
        )
        return False
    return True
