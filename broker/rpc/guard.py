"""Per-method guards around any :class:`RpcClient`: a bound on calls waiting, and a breaker.

The transport stays as it is; this is one more layer around ``call`` (grpc's interceptors,
FastStream's middlewares), so both transports get it alike.

- **Bulkhead**: at most ``max_waiting`` calls of one method wait for their replies; the next
  fails at once with :class:`RpcUnavailable` ("overloaded"), so one slow worker cannot take every
  request of the front with it.
- **Breaker**: ``failures`` consecutive timeouts (or "unavailable" answers) of a method open its
  circuit: calls fail at once ("circuit open") for ``cooldown`` seconds, then one call goes
  through as a probe (half-open); its success closes the circuit, its failure opens it again.
  The state is the gauge ``rpc_client_breaker_state{method}`` (0 closed, 1 half-open, 2 open).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from broker.errors import RpcRemoteError, RpcRemoteUnavailable, RpcTimeout, RpcUnavailable
from broker.rpc.client import RpcClient
from broker.telemetry.metrics import RPC_BREAKER_STATE, RPC_CLIENT_ERRORS, labelled

T = TypeVar("T")

log = logging.getLogger("broker._guard")  # its name before broker/ had packages

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
_STATE_NAMES = ("closed", "half-open", "open")


@dataclass
class _Method:
    waiting: int = 0
    failures: int = 0  # consecutive
    state: int = CLOSED
    opened_at: float = 0.0
    probing: bool = False
    name: str = field(default="")

    def set_state(self, state: int) -> None:
        if state != self.state:
            log.warning(
                "breaker method=%s %s -> %s",
                self.name,
                _STATE_NAMES[self.state],
                _STATE_NAMES[state],
            )
        self.state = state
        labelled(RPC_BREAKER_STATE, self.name).set(state)


def _answered(guard: _Method) -> None:
    guard.failures = 0
    if guard.state != CLOSED:
        guard.set_state(CLOSED)


class GuardedRpcClient:
    """An :class:`RpcClient` whose calls pass a bulkhead and a breaker per method first."""

    def __init__(
        self,
        inner: RpcClient,
        *,
        max_waiting: int = 64,
        failures: int = 5,
        cooldown: float = 2.0,
    ) -> None:
        """``max_waiting`` 0 turns the bulkhead off, ``failures`` 0 the breaker."""
        self.inner = inner
        self._max_waiting = max_waiting
        self._failures = failures
        self._cooldown = cooldown
        self._methods: dict[str, _Method] = {}

    def state(self, method: str) -> str:
        """``closed``, ``half-open`` or ``open``."""
        return _STATE_NAMES[self._method(method).state]

    def _method(self, method: str) -> _Method:
        guard = self._methods.get(method)
        if guard is None:
            guard = self._methods[method] = _Method(name=method)
            labelled(RPC_BREAKER_STATE, method).set(CLOSED)
            labelled(RPC_CLIENT_ERRORS, method, "overloaded")
            labelled(RPC_CLIENT_ERRORS, method, "circuit_open")
        return guard

    async def call(
        self, method: str, request: Any, result_type: type[T], *, timeout: float | None = None
    ) -> T:
        guard = self._method(method)
        probe = self._admit(method, guard)
        guard.waiting += 1
        try:
            result = await self.inner.call(method, request, result_type, timeout=timeout)
        except (RpcTimeout, RpcRemoteUnavailable) as exc:
            self._failed(guard, exc)
            raise
        except RpcRemoteError:
            _answered(guard)  # an error reply is still an answer: the worker is there
            raise
        else:
            _answered(guard)
            return result
        finally:
            guard.waiting -= 1
            if probe:
                guard.probing = False

    def _admit(self, method: str, guard: _Method) -> bool:
        """Raise unless the call may go; whether it goes as the half-open probe."""
        if guard.state == OPEN and time.monotonic() - guard.opened_at >= self._cooldown:
            guard.set_state(HALF_OPEN)
        if guard.state == OPEN or (guard.state == HALF_OPEN and guard.probing):
            labelled(RPC_CLIENT_ERRORS, method, "circuit_open").inc()
            raise RpcUnavailable(method, "circuit open: the worker has been failing; retry later")
        if self._max_waiting and guard.waiting >= self._max_waiting:
            labelled(RPC_CLIENT_ERRORS, method, "overloaded").inc()
            raise RpcUnavailable(method, "overloaded: too many calls waiting for this worker")
        if guard.state == HALF_OPEN:
            guard.probing = True
            return True
        return False

    def _failed(self, guard: _Method, exc: Exception) -> None:
        if not self._failures:
            return
        guard.failures += 1
        if guard.state == HALF_OPEN or guard.failures >= self._failures:
            guard.opened_at = time.monotonic()
            if guard.state != OPEN:
                log.warning("breaker opens after %d failures: %s", guard.failures, exc)
            guard.set_state(OPEN)

    async def ping(self) -> None:
        await self.inner.ping()
