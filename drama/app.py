"""drama-service: the aiohttp application and the resources it owns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from broker import AmqpRpcClient, metrics_handler, redact_url

from . import handlers
from .openapi import openapi
from .problems import problem_middleware
from .settings import Settings
from .store import DramaStore
from .timing import server_timing

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """The application; its database engine and RPC client open on startup, close on cleanup."""
    # Outermost first: Server-Timing sees every response, problem+json ones included. With
    # tracing on, the OpenTelemetry server middleware is put in front of both (instrument()).
    app = web.Application(middlewares=[server_timing, problem_middleware])
    app[handlers.TIMEOUT] = settings.rpc_timeout_ms / 1000

    async def database(app: web.Application) -> AsyncIterator[None]:
        store = await DramaStore.open(settings.database_url)
        app[handlers.STORE] = store
        yield
        await store.close()

    async def rpc(app: web.Application) -> AsyncIterator[None]:
        client = AmqpRpcClient(
            settings.amqp_url,
            timeout=settings.rpc_timeout_ms / 1000,
            publisher_confirms=settings.rpc_publisher_confirms,
        )
        await client.connect()
        log.info("connected to the broker at %s", redact_url(settings.amqp_url))
        app[handlers.RPC] = client
        yield
        await client.close()

    app.cleanup_ctx.extend([database, rpc])
    app.router.add_get("/dramas", handlers.list_dramas, name="list_dramas")
    app.router.add_get("/dramas/{id}", handlers.get_drama, name="get_drama")
    app.router.add_get("/healthz", handlers.healthz, name="healthz")
    app.router.add_get("/readyz", handlers.readyz, name="readyz")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/metrics", metrics_handler, name="metrics")
    return app
