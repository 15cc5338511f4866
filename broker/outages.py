"""Dependency outages told apart from bugs, and logged once with a count.

A database that refuses connections, restarts or drops them is not a bug of the service: the
caller should get "unavailable, retry" (HTTP 503, RPC error ``unavailable``), not a 500 or a
dead-lettered request, and the log should not grow by a traceback per request while it lasts.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["RepeatedLog", "dependency_unavailable"]

# SQLSTATE classes of a server that cannot serve now (PostgreSQL appendix A): 08 connection
# exception, 53 insufficient resources (too many connections), 57 operator intervention
# (shutdown, terminated backend, cannot connect now). 55000 is what a database with
# ALLOW_CONNECTIONS false answers to a new connection.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_SQLSTATES = frozenset({"55000"})


def dependency_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says a dependency cannot be reached now.

    Covers SQLAlchemy's wrapping of every driver (``DBAPIError`` and its ``OperationalError``
    and ``InterfaceError``, a pool that cannot hand out a connection in time), asyncpg's own
    connection errors and server states, and the OS's (refused, reset, unreachable).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_unavailable(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _says_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    # Looked up, not imported: a SQLAlchemy error exists only once SQLAlchemy is loaded, and
    # stream-service, which has no database, does not load it.
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None:
        if isinstance(
            exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError | sa.DisconnectionError
        ):
            return True
        if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
            return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    # asyncpg's client-side errors: the connection is closed or was never made.
    module = type(exc).__module__
    return module.startswith("asyncpg") and type(exc).__name__ in (
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "InternalClientError",
    )


class RepeatedLog:
    """Logs a repeated warning once per ``window`` seconds, with the count of the repeats.

    The first occurrence of a key is logged at once (with the exception's one-line summary,
    never a traceback); the same key again within the window is only counted, and the count
    goes out with the next line logged for that key. An outage of 10 s at 100 requests a
    second is a few lines, not a thousand tracebacks.
    """

    def __init__(self, logger: logging.Logger, window: float = 10.0) -> None:
        self._log = logger
        self._window = window
        self._state: dict[str, tuple[float, int]] = {}  # key -> (last logged, repeats since)

    def warning(self, key: str, message: str, exc: BaseException | None = None) -> bool:
        """Log ``message`` for ``key`` unless it was logged less than ``window`` ago; whether
        it was logged now."""
        now = time.monotonic()
        last, repeats = self._state.get(key, (-self._window - 1, 0))
        if now - last < self._window:
            self._state[key] = (last, repeats + 1)
            return False
        if len(self._state) > 1000:  # keys are few (error classes); bound them all the same
            self._state.clear()
        self._state[key] = (now, 0)
        cause = f": {type(exc).__name__}: {exc}".split("\n", 1)[0] if exc is not None else ""
        suffix = f" (and {repeats} more in the last {now - last:.0f} s)" if repeats else ""
        self._log.warning("%s%s%s", message, cause, suffix)
        return True
