"""The OpenAPI 3.1 document of drama-service, served at ``/openapi.json``.

Response schemas are generated from the msgspec Structs the handlers encode, so the document
cannot drift from what the server sends; the tests validate real responses against it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from .handlers import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_ID,
    MAX_LIMIT,
    PLAYLIST_CONTENT_TYPE,
    DramaDetail,
    DramaPage,
)

_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_UPSTREAM = {
    "502": _problem("A worker replied with an error."),
    "503": _problem(
        "Too many requests in flight, or a worker, the broker or the database is not "
        "reachable; retry after Retry-After seconds."
    ),
    "504": _problem("A worker did not answer within RPC_TIMEOUT_MS."),
}
_STATUS = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string"}},
}


def build_document() -> dict[str, Any]:
    (_, components) = msgspec.json.schema_components(
        [DramaDetail, DramaPage], ref_template="#/components/schemas/{name}"
    )
    components["Problem"] = _PROBLEM
    components["Status"] = _STATUS
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "drama-streaming",
            "version": "1",
            "description": "Dramas, their episodes and pre-signed streaming URLs.",
        },
        "paths": {
            "/dramas": {
                "get": {
                    "operationId": "listDramas",
                    "summary": "A page of the catalogue, each drama with its first episode.",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_LIMIT,
                                "default": DEFAULT_LIMIT,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "next_cursor of the previous page; opaque. "
                            "Empty or absent: the first page.",
                            "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                        },
                    ],
                    "responses": {
                        "200": _ok("DramaPage", "A page; next_cursor is null on the last."),
                        "400": _problem("A bad limit or cursor."),
                        **_UPSTREAM,
                    },
                }
            },
            "/dramas/{id}": {
                "get": {
                    "operationId": "getDrama",
                    "summary": "A drama with every episode and its pre-signed stream URL.",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                        }
                    ],
                    "responses": {
                        "200": _ok("DramaDetail", "The drama."),
                        "400": _problem("The id is not a positive integer."),
                        "404": _problem("No drama with that id."),
                        **_UPSTREAM,
                    },
                }
            },
            "/dramas/{id}/episodes/{number}/playlist.m3u8": {
                "get": {
                    "operationId": "getPlaylist",
                    "summary": "An episode's HLS playlist, every segment pre-signed (playable).",
                    "parameters": [
                        {
                            "name": name,
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                        }
                        for name in ("id", "number")
                    ],
                    "responses": {
                        "200": {
                            "description": "An HLS media playlist (RFC 8216); its URLs expire.",
                            "content": {PLAYLIST_CONTENT_TYPE: {"schema": {"type": "string"}}},
                        },
                        "400": _problem("The id or the episode number is not a positive integer."),
                        "404": _problem("No such episode of that drama."),
                        **_UPSTREAM,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: the process answers.",
                    "responses": {"200": _ok("Status", "Alive.")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: the broker and the database are reachable.",
                    "responses": {
                        "200": _ok("Status", "Ready."),
                        "503": _problem("Not ready."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics; OpenMetrics (with trace exemplars) when asked.",
                    "responses": {
                        "200": {
                            "description": "The metrics.",
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": components},
    }


_DOCUMENT = msgspec.json.encode(build_document())


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=_DOCUMENT, content_type="application/json")
