"""Protocol v1 on the wire: names, headers and the JSON reply envelope (docs/rpc.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
CONTENT_TYPE = "application/json"

# Request headers.
SENT_AT_NS = "x-sent-at-ns"  # wall clock (time.time_ns) when the caller published
TIMEOUT_MS = "x-timeout-ms"  # the caller's timeout; sent-at + timeout is the deadline
# Reply headers.
HANDLER_NS = "x-handler-ns"  # handler duration, monotonic clock of the worker
QUEUE_WAIT_NS = "x-queue-wait-ns"  # delivery time - sent-at, clamped at 0 (clock skew applies)


@dataclass(frozen=True, slots=True)
class Topology:
    """Where requests go: the exchange methods are routed on, and where rejected requests end.

    The defaults are protocol v1's names; tests and side-by-side stacks on one broker pass
    others (or use a vhost of their own).
    """

    exchange: str = "rpc"
    dead_letter_exchange: str = "rpc.dlx"
    dead_letter_queue: str = "rpc.dead"
    control_exchange: str = "rpc.control"  # fault-injection rules (broker.rpc.faults)
    cancel_exchange: str = "rpc.cancel"  # calls given up by their callers (broker.rpc.cancel)
    # The alternate exchange of `exchange` (by policy) and its queue (broker.rpc.unroutable).
    unroutable_exchange: str = "rpc.unroutable"


class ErrorBody(msgspec.Struct, frozen=True):
    type: str
    message: str


class Reply(msgspec.Struct, Generic[T], frozen=True):
    """``{"result": ...}`` or ``{"error": {"type": ..., "message": ...}}``."""

    result: T | None = None
    error: ErrorBody | None = None


_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    """JSON-encode a request or a result (msgspec Structs, dicts, lists, scalars)."""
    return _encoder.encode(value)


def encode_result(result: Any) -> bytes:
    return b'{"result":' + _encoder.encode(result) + b"}"


def encode_error(error_type: str, message: str) -> bytes:
    return _encoder.encode({"error": {"type": error_type, "message": message}})


def header_int(headers: Mapping[str, Any] | None, name: str) -> int | None:
    """An integer header, or None when it is absent or not an integer."""
    if not headers:
        return None
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def text_header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer HTTP header, or None when it is absent or not an integer."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
