"""What every worker service reads alike (:class:`WorkerSettings`), and a worker's process
(:func:`serving_worker`): its metrics and probes, the worker, its methods over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from broker.rpc.http_server import serving_rpc_http
from broker.rpc.worker import QueueType, RpcWorker
from broker.service.env import Env
from broker.service.tls import amqp_url_from_env
from broker.telemetry.metrics import serving_metrics


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What every worker service reads alike: its broker and consumer, where it serves
    ``/metrics`` and the probes, and RPC over HTTP (off unless a port is set)."""

    amqp_url: str = field(repr=False)
    prefetch: int
    metrics_port: int
    faults_enabled: bool = False
    # Replies confirmed by the broker before their request is acked (docs/rpc.md).
    reply_confirms: bool = False
    queue_type: QueueType = "classic"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from outside the container
    rpc_http_host: str = "0.0.0.0"  # noqa: S104 - called from other containers
    rpc_http_port: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env, *, prefetch: int, metrics_port: int) -> WorkerSettings:
        """The variables, with this service's defaults for ``PREFETCH`` and ``METRICS_PORT``."""
        queue_type = env.choice("RPC_QUEUE_TYPE", "classic", ("classic", "quorum"))
        return cls(
            amqp_url=amqp_url_from_env(env),
            prefetch=env.integer("PREFETCH", prefetch, low=1, high=65535),
            metrics_port=env.integer("METRICS_PORT", metrics_port, low=1, high=65535),
            faults_enabled=env.flag("FAULTS_ENABLED", default=False),
            reply_confirms=env.flag("RPC_REPLY_CONFIRMS", default=False),
            queue_type="quorum" if queue_type == "quorum" else "classic",
            metrics_host=env.text("METRICS_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_host=env.text("RPC_HTTP_HOST", "0.0.0.0"),  # noqa: S104 - see above
            rpc_http_port=env.integer("RPC_HTTP_PORT", 0, low=1, high=65535) or None,
            log_level=env.choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )

    def rpc_worker(self, queue: str, service: str | None = None) -> RpcWorker:
        """The worker of ``queue`` as these settings say; register its methods, then serve it
        with :func:`serving_worker`. ``service`` names its broker connection."""
        instance = f"{socket.gethostname()}-{os.getpid()}"
        return RpcWorker(
            self.amqp_url,
            queue,
            connection_name=f"{service} {queue} {instance}" if service else None,
            prefetch=self.prefetch,
            queue_type=self.queue_type,
            faults=self.faults_enabled,
            publisher_confirms=self.reply_confirms,
        )


@asynccontextmanager
async def serving_worker(worker: RpcWorker, settings: WorkerSettings) -> AsyncIterator[None]:
    """A worker's process, for the block: ``/metrics`` and the probes on the metrics port
    (ready while it consumes), the worker itself, and its methods over HTTP when
    ``RPC_HTTP_PORT`` is set. HTTP is entered after the worker, so left first: it drains
    before the queue does.
    """
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            serving_metrics(settings.metrics_host, settings.metrics_port, lambda: worker.ready)
        )
        await stack.enter_async_context(worker)
        if settings.rpc_http_port is not None:
            await stack.enter_async_context(
                serving_rpc_http(worker, settings.rpc_http_host, settings.rpc_http_port)
            )
        yield
