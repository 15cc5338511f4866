"""What ``make run`` checks before it starts anything: ports, the broker's login, the database.

Each check that fails is one line saying what is wrong and what to do, so a taken port or a
wrong password costs a second, not a stack started halfway and a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import aiormq
import aiormq.exceptions

from broker import redact_url


@dataclass(frozen=True)
class Port:
    """A port the stack will listen on, and the option that moves it."""

    port: int
    what: str
    option: str


def port_problem(port: Port, host: str = "127.0.0.1") -> str | None:
    """Whether something listens on ``port`` already (or it cannot be bound)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port.port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            why = "is in use" if taken else f"cannot be bound ({exc.strerror})"
            return (
                f"port {port.port} ({port.what}) {why}: pick another with {port.option}, "
                "or stop what listens there"
            )
    return None


def duplicate_ports(ports: list[Port]) -> list[str]:
    seen: dict[int, Port] = {}
    problems = []
    for port in ports:
        if port.port in seen:
            first = seen[port.port]
            problems.append(
                f"port {port.port} is given twice ({first.option} and {port.option}): "
                "give each its own"
            )
        seen[port.port] = port
    return problems


async def broker_problem(amqp_url: str, timeout: float = 5.0) -> str | None:
    """Connect and log in, as the services will; the failure in one line with its fix."""
    parts = urllib.parse.urlsplit(amqp_url)
    where = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"
    shown = redact_url(amqp_url)
    try:
        async with asyncio.timeout(timeout):
            connection = await aiormq.connect(amqp_url)
    except aiormq.exceptions.ProbableAuthenticationError:
        return (
            f"RabbitMQ at {where} refused the login of {shown} (ACCESS_REFUSED): set "
            "AMQP_URL=amqp://USER:PASSWORD@HOST:PORT/VHOST with a user it knows"
        )
    except TimeoutError:
        return (
            f"RabbitMQ at {where} did not answer in {timeout:g} s: is it running? Or set AMQP_URL"
        )
    except (aiormq.exceptions.ConnectionClosed, aiormq.exceptions.InvalidFrameError):
        # Logged in, then refused the vhost: aiormq (7.2) keeps only the frame's name.
        vhost = urllib.parse.unquote(parts.path[1:]) or "/"
        return (
            f"RabbitMQ at {where} closed the connection of {shown} when it asked for vhost "
            f"{vhost!r}: create it and let the user in (rabbitmqctl add_vhost, "
            "set_permissions), or set AMQP_URL"
        )
    except (OSError, aiormq.exceptions.AMQPError) as exc:
        return (
            f"RabbitMQ is not reachable at {where} ({exc}): start it with "
            "'rabbitmq-server -detached' (Debian package rabbitmq-server) or set AMQP_URL"
        )
    await connection.close()
    return None


def database_problem(workdir: Path, url: str | None) -> str | None:
    """The SQLite files go in ``workdir``: it must be a directory we can write a database in.

    A non-SQLite URL is the service's own to check (its readiness says so): ``make run`` uses
    SQLite files.
    """
    if url is not None and not url.startswith("sqlite"):
        return None
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".preflight.db"
        with sqlite3.connect(probe) as db:
            db.execute("create table if not exists t (x)")
        probe.unlink()
    except (OSError, sqlite3.Error) as exc:
        return (
            f"the databases go in {workdir}, which cannot hold them ({exc}): "
            "pick a writable --workdir"
        )
    return None


async def problems(
    amqp_url: str, ports: list[Port], workdir: Path, database_urls: list[str | None]
) -> list[str]:
    """Every check's failure, in the order a person would fix them."""
    found = duplicate_ports(ports)
    found += [problem for port in ports if (problem := port_problem(port))]
    broker = await broker_problem(amqp_url)
    if broker:
        found.append(broker)
    found += {problem for url in database_urls if (problem := database_problem(workdir, url))}
    return found
