"""One call as every transport makes it: a chain of middlewares around the transport's round trip.

A :class:`Call` goes through :data:`CallMiddleware` functions, each given the call and the next
step, down to the transport, which sends the request and returns the reply body and its
:class:`CallTiming`. The chain is composed once, when the client is made (:func:`compose`), so
a call pays for each middleware only what the middleware does. The chain every transport uses
(:func:`call_chain`), outermost first:

- :func:`tracing`: the CLIENT span ``call <method>`` (none where it would record nothing), its
  error status;
- :func:`metering`: ``rpc_client_duration_seconds`` by outcome, the in-flight gauge, the error
  counter;
- :func:`decoding`: the reply envelope decoded as the caller's type, or its error raised;
- :func:`timing`: the :class:`CallTiming` collected (Server-Timing), the overhead histogram and
  the span's ``rpc.*_ms`` attributes.

A new concern around calls is one more middleware in that list. Per-method guards (bulkhead,
breaker) wrap a whole client instead (:mod:`broker.rpc.guard`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from broker.errors import RpcError
from broker.rpc.client import decode_reply
from broker.telemetry.metrics import (
    RPC_CLIENT_DURATION,
    RPC_CLIENT_ERRORS,
    RPC_CLIENT_IN_FLIGHT,
    RPC_OVERHEAD,
    exemplar,
    labelled,
)
from broker.telemetry.tracing import CallTiming, record_timing, recorded_span, span_error


class Call:
    """What a caller asked for, as the middlewares and the transport see it; ``span`` is the
    call's CLIENT span once :func:`tracing` made one (what the metrics' exemplars point at)."""

    __slots__ = ("attributes", "method", "request", "result_type", "span", "timeout")

    def __init__(
        self,
        method: str,
        request: Any,
        result_type: type[Any],
        timeout: float,
        attributes: dict[str, Any],  # the CLIENT span's attributes (the transport's)
    ) -> None:
        self.method = method
        self.request = request
        self.result_type = result_type
        self.timeout = timeout
        self.attributes = attributes
        self.span: trace.Span = trace.INVALID_SPAN


Next = Callable[[Call], Awaitable[Any]]
CallMiddleware = Callable[[Call, Next], Awaitable[Any]]
RoundTrip = Callable[[Call], Awaitable[tuple[bytes, CallTiming]]]


def compose(middlewares: Sequence[CallMiddleware], round_trip: RoundTrip) -> Next:
    """``round_trip`` wrapped in ``middlewares``, the first outermost."""
    step: Next = round_trip
    for middleware in reversed(middlewares):
        step = _bind(middleware, step)
    return step


def _bind(middleware: CallMiddleware, next_step: Next) -> Next:
    def bound(call: Call) -> Awaitable[Any]:
        return middleware(call, next_step)  # the middleware's coroutine, no frame of its own

    return bound


def call_chain(
    tracer: trace.Tracer, tracer_provider: trace.TracerProvider | None, round_trip: RoundTrip
) -> Next:
    """The chain every transport puts around its round trip (this module's docstring)."""
    return compose((tracing(tracer, tracer_provider), metering, decoding, timing), round_trip)


def tracing(tracer: trace.Tracer, tracer_provider: trace.TracerProvider | None) -> CallMiddleware:
    """The CLIENT span ``call <method>``, where it would record something."""

    async def traced(call: Call, next_step: Next) -> Any:
        # No CLIENT span where it would record nothing (a trace the sampler turned down, or no
        # SDK): the current context goes on to the worker as it is, and nothing is set on a span.
        scope = recorded_span(
            tracer,
            tracer_provider,
            f"call {call.method}",
            kind=SpanKind.CLIENT,
            attributes=call.attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        with scope as span:
            call.span = span
            try:
                return await next_step(call)
            except RpcError as exc:
                span_error(span, exc.error_type, str(exc))
                raise
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an unencodable request, or a bug: never "ok"
                span_error(span, type(exc).__name__, repr(exc))
                raise

    return traced


_methods_seen: set[str] = set()


async def metering(call: Call, next_step: Next) -> Any:
    """The client metrics of one call: in flight, duration by outcome, errors by type."""
    method = call.method
    if method not in _methods_seen:
        # Error series exist from the first call on, at 0: a rate over them is 0, not absent.
        _methods_seen.add(method)
        for error_type in ("timeout", "unroutable", "unavailable"):
            RPC_CLIENT_ERRORS.labels(method, error_type)
    current = call.span  # the exemplars' span (none unless sampled)
    in_flight = labelled(RPC_CLIENT_IN_FLIGHT, method)
    in_flight.inc()
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await next_step(call)
    except RpcError as exc:
        outcome = exc.error_type
        labelled(RPC_CLIENT_ERRORS, method, outcome).inc()
        raise
    except asyncio.CancelledError:
        outcome = "cancelled"  # the caller gave up (say, the HTTP client went away)
        raise
    except BaseException:  # an unencodable request, or a bug: never "ok"
        outcome = "error"
        raise
    finally:
        in_flight.dec()
        labelled(RPC_CLIENT_DURATION, method, outcome).observe(
            time.perf_counter() - started, exemplar(current)
        )


async def decoding(call: Call, next_step: Next) -> Any:
    """The reply's result as ``call.result_type``, or the worker's error raised."""
    body, _timing = await next_step(call)
    return decode_reply(call.method, body, call.result_type)


async def timing(call: Call, next_step: Next) -> tuple[bytes, CallTiming]:
    """What the call cost: collected, observed, and on the CLIENT span."""
    body, measured = await next_step(call)
    record_timing(measured)
    span = call.span
    labelled(RPC_OVERHEAD, call.method).observe(measured.overhead_ns / 1e9, exemplar(span))
    if span.is_recording():
        span.set_attributes(
            {
                "rpc.round_trip_ms": measured.round_trip_ns / 1e6,
                "rpc.handler_ms": measured.handler_ns / 1e6,
                "rpc.overhead_ms": measured.overhead_ns / 1e6,
                "rpc.queue_wait_ms": measured.queue_wait_ns / 1e6,
                "rpc.reply_wait_ms": measured.reply_wait_ns / 1e6,
            }
        )
    return body, measured
