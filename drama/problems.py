"""The one boundary that maps errors to the wire: RFC 9457 problem+json responses.

    ProblemError            an error the client is told about as it is
    ├── InvalidParameter    400: a bad id, limit or cursor
    └── DramaNotFound       404: no drama with that id

RPC failures map by type: timeout 504, unroutable or broker down 503, remote not-found 404,
a worker whose own database is down (``unavailable``) 503, other remote errors 502. A database
that cannot be reached or is lost (SQLAlchemy's DBAPIError family, asyncpg's connection errors,
the OS's) is a 503, logged once every few seconds with a count rather than a traceback per
request. Anything else is a 500. No body says anything of the internals (close reasons, class
names, a worker's message): those go to the log, here and only here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import sqlalchemy.exc
from aiohttp import web

from broker import (
    RepeatedLog,
    RpcNotFound,
    RpcRemoteError,
    RpcRemoteUnavailable,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
    dependency_unavailable,
)

log = logging.getLogger(__name__)
_outages = RepeatedLog(log)

PROBLEM_JSON = "application/problem+json"
_BASE = "https://drama-streaming.dev/problems/"


class ProblemError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidParameter(ProblemError):
    status = 400
    slug = "invalid-parameter"
    title = "Invalid parameter"


class DramaNotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "Not found"


def problem(
    status: int, slug: str, title: str, detail: str, instance: str, **extra: Any
) -> web.Response:
    body = {
        "type": _BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type=PROBLEM_JSON, headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(  # noqa: PLR0911 - one return per error class is the mapping
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    path = request.path
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own 404 (no route) and 405 (wrong method), in the same format as ours.
        response = problem(exc.status, "http", exc.reason, exc.text or exc.reason, path)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ProblemError as exc:
        return problem(exc.status, exc.slug, exc.title, exc.detail, path)
    except RpcTimeout as exc:
        return problem(504, "upstream-timeout", "Upstream timeout", str(exc), path)
    except RpcNotFound as exc:
        return problem(404, "not-found", "Not found", f"{exc.method}: no such thing", path)
    except RpcUnavailable as exc:
        # The reason (a broker's close reason, say) is the log's, not the client's.
        _outages.warning(f"rpc:{exc.error_type}", f"upstream unavailable for {path}", exc)
        return problem(503, "upstream-unavailable", "Upstream unavailable", _unavailable(exc), path)
    except RpcRemoteUnavailable as exc:
        detail = f"{exc.method}: a dependency of the worker is unavailable"
        return problem(503, "upstream-unavailable", "Upstream unavailable", detail, path)
    except RpcRemoteError as exc:
        detail = f"{exc.method}: the worker failed ({exc.error_type})"
        return problem(502, "upstream-error", "Upstream error", detail, path)
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        if not dependency_unavailable(exc):
            log.exception("database error for %s %s", request.method, path)
            return problem(500, "internal", "Internal error", "see the service log", path)
        _outages.warning(f"db:{type(exc).__name__}", f"database unavailable for {path}", exc)
        return problem(503, "database-unavailable", "Database unavailable", "retry later", path)
    except Exception:
        log.exception("unhandled error for %s %s", request.method, path)
        return problem(500, "internal", "Internal error", "see the service log", path)


def _unavailable(exc: RpcUnavailable) -> str:
    """What a client may know of an unreachable upstream: which method, and why in general."""
    if isinstance(exc, RpcUnroutable):
        reason = "no worker queue is bound to this method"
    elif exc.message.startswith(("circuit open", "overloaded", "no consumer")):
        reason = exc.message  # our own words (the breaker's, the bulkhead's): nothing internal
    else:
        reason = "the message broker is not reachable"
    return reason if exc.method == "*" else f"{exc.method}: {reason}"
