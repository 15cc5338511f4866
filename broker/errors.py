"""The errors of the RPC layer.

RpcError                    every failure of a call, as the caller sees it
├── RpcUnavailable          broker down, connection lost, or nobody serves the method (503)
│   └── RpcUnroutable       the broker returned the request: no queue is bound to the method
├── RpcTimeout              no reply within the call's timeout (504)
└── RpcRemoteError          the worker replied with an error (502)
    ├── RpcNotFound         ... and the error says the thing asked for does not exist (404)
    └── RpcRemoteUnavailable ... and the error says a dependency of the worker is down (503)

HandlerError                raised by a handler to send a typed error reply
├── NotFound                "not_found": the caller asked for something that does not exist
├── BadRequest              "bad_request": the request is well-formed JSON but invalid
└── Unavailable             "unavailable": a dependency (the database) cannot be reached now

ConfigError                 a setting read from the environment is missing or malformed
"""

from __future__ import annotations


class RpcError(Exception):
    """A call failed. ``method`` names the RPC method that was called.

    ``error_type`` is a short, stable name of the failure, for spans and metrics.
    """

    error_type = "error"

    def __init__(self, method: str, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.message = message


class RpcUnavailable(RpcError):
    """The call could not reach a worker: broker down, connection lost, or no route."""

    error_type = "unavailable"


class RpcUnroutable(RpcUnavailable):
    """The broker returned the request because no queue is bound to the method."""

    error_type = "unroutable"


class RpcTimeout(RpcError):
    """No reply arrived within the call's timeout."""

    error_type = "timeout"

    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(method, f"no reply within {timeout * 1000:.0f} ms")
        self.timeout = timeout


class RpcRemoteError(RpcError):
    """The worker handled the call and replied with an error of type ``error_type``."""

    def __init__(self, method: str, error_type: str, message: str) -> None:
        super().__init__(method, f"{error_type}: {message}")
        self.error_type = error_type  # the worker's: not_found, bad_request, internal...
        self.remote_message = message


class RpcNotFound(RpcRemoteError):
    """The worker replied ``not_found``."""


class RpcRemoteUnavailable(RpcRemoteError):
    """The worker replied ``unavailable``: its database (or another dependency) is down."""


class HandlerError(Exception):
    """Raised by a handler: becomes an error reply ``{"error": {"type": ..., "message": ...}}``."""

    error_type = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(HandlerError):
    """The request names something that does not exist."""

    error_type = "not_found"


class BadRequest(HandlerError):
    """The request decodes but its content is invalid."""

    error_type = "bad_request"


class Unavailable(HandlerError):
    """A dependency of the handler cannot be reached now; the caller may retry later."""

    error_type = "unavailable"


class ConfigError(ValueError):
    """A setting read from the environment is missing or malformed."""
