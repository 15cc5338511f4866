"""drama-service: the aiohttp application and the resources it owns."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web

from broker import (
    AmqpRpcClient,
    GuardedRpcClient,
    HttpRpcClient,
    ReadCache,
    RpcClient,
    metrics_handler,
    redact_url,
)

from . import handlers
from .admission import Admission, deadline
from .openapi import openapi
from .problems import problem_middleware
from .settings import Settings
from .store import DramaStore
from .timing import server_timing

log = logging.getLogger(__name__)


def create_app(settings: Settings, rpc_transport: RpcClient | None = None) -> web.Application:
    """The application; its database engine and RPC client open on startup, close on cleanup.

    ``rpc_transport`` replaces the client ``RPC_TRANSPORT`` selects (the unit tests pass an
    in-memory one, :class:`broker.rpc.InMemoryRpcClient`); the caller opens and closes it.
    """
    # Outermost first: Server-Timing sees every response, problem+json ones included; admission
    # sheds before the deadline starts. With tracing on, the OpenTelemetry server middleware is
    # put in front of them all (instrument()).
    admitting = Admission(settings.max_in_flight, settings.admission_lag_ms / 1000)
    app = web.Application(
        middlewares=[
            server_timing,
            problem_middleware,
            admitting.middleware,
            deadline(settings.request_timeout_ms / 1000),
        ],
        # Request lines and headers: aiohttp's defaults (8190 bytes a line or a field) are
        # the limits; a bigger one gets 400 (431 for a header) before any handler runs.
        handler_args={"max_line_size": 8190, "max_field_size": 8190},
    )
    app[handlers.TIMEOUT] = settings.rpc_timeout_ms / 1000

    async def database(app: web.Application) -> AsyncIterator[None]:
        store = await DramaStore.open(settings.database_url)
        store.cache = ReadCache("dramas", settings.cache_ttl_ms / 1000)
        app[handlers.STORE] = store
        yield
        await store.close()

    async def rpc(app: web.Application) -> AsyncIterator[None]:
        if rpc_transport is not None:
            app[handlers.RPC] = rpc_transport
            app[handlers.CALLS] = guarded(rpc_transport)
            yield
            return
        client = rpc_client(settings)
        await client.connect()
        if settings.rpc_transport == "http":
            log.info(
                "calling workers over HTTP: episode %s, stream %s",
                redact_url(settings.episode_rpc_url or ""),
                redact_url(settings.stream_rpc_url or ""),
            )
        else:
            log.info("connected to the broker at %s", redact_url(settings.amqp_url))
        app[handlers.RPC] = client
        app[handlers.CALLS] = guarded(client)
        yield
        await client.close()

    def guarded(client: RpcClient) -> GuardedRpcClient:
        return GuardedRpcClient(
            client,
            max_waiting=settings.rpc_max_waiting,
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_ms / 1000,
        )

    app.cleanup_ctx.extend([database, rpc, admitting.adapting])
    app.router.add_get("/dramas", handlers.list_dramas, name="list_dramas")
    app.router.add_get("/dramas/{id}", handlers.get_drama, name="get_drama")
    app.router.add_get(
        "/dramas/{id}/episodes/{number}/playlist.m3u8",
        handlers.get_playlist,
        name="get_playlist",
    )
    app.router.add_get("/healthz", handlers.healthz, name="healthz")
    app.router.add_get("/readyz", handlers.readyz, name="readyz")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    return app


def rpc_client(settings: Settings) -> AmqpRpcClient | HttpRpcClient:
    """The transport ``RPC_TRANSPORT`` selects; both behave as one :class:`broker.RpcClient`."""
    timeout = settings.rpc_timeout_ms / 1000
    if settings.rpc_transport == "http":
        # Settings checked both URLs are set when the transport is http.
        assert settings.episode_rpc_url is not None
        assert settings.stream_rpc_url is not None
        # Each worker's methods are named after it (episode.list, stream.presign).
        urls = {"episode.": settings.episode_rpc_url, "stream.": settings.stream_rpc_url}
        return HttpRpcClient(urls, timeout=timeout)
    return AmqpRpcClient(
        settings.amqp_url,
        timeout=timeout,
        publisher_confirms=settings.rpc_publisher_confirms,
        connection_name=f"drama-service rpc-client {socket.gethostname()}-{os.getpid()}",
    )
