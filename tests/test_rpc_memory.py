"""The in-memory transport: a worker's Router called in-process through protocol v1's encoding.

No broker, no database, no subprocess: the protocol round trip, each error a caller can get,
and deadlines, in milliseconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from broker.rpc import (
    BadRequest,
    Call,
    HandlerError,
    InMemoryRpcClient,
    NotFound,
    Router,
    RpcNotFound,
    RpcRemoteError,
    RpcRemoteUnavailable,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
    RpcWorker,
    Unavailable,
)
from broker.rpc.calls import Next
from broker.rpc.router import Handler
from broker.telemetry import collect_timings


class Ask(msgspec.Struct, forbid_unknown_fields=True):
    value: int


class Answer(msgspec.Struct):
    value: int


class OutageError(ConnectionRefusedError):
    """What a database driver raises when its server is down (an OSError: an outage)."""


class Teapot(HandlerError):
    error_type = "teapot"


def router_with(**handlers: Any) -> Router:
    router = Router("rpc.test")
    for method, handler in handlers.items():
        router.register(f"test.{method}", Ask, handler)
    return router


async def echo(ask: Ask) -> Answer:
    return Answer(ask.value)


async def test_round_trip_through_the_wire_format() -> None:
    seen: list[Ask] = []

    async def record(ask: Ask) -> Answer:
        seen.append(ask)
        return Answer(ask.value * 2)

    async with InMemoryRpcClient(router_with(double=record)) as client:
        with collect_timings() as timings:
            assert await client.call("test.double", Ask(21), Answer) == Answer(42)
    assert seen == [Ask(21)]  # decoded from JSON as the worker's request type
    assert [t.method for t in timings] == ["test.double"]
    # A dict request is encoded as JSON too, and a dict result decoded.
    async with InMemoryRpcClient(router_with(echo=echo)) as client:
        assert await client.call("test.echo", {"value": 3}, dict) == {"value": 3}


async def test_a_worker_router_serves_in_memory() -> None:
    worker = RpcWorker("amqp://unused/", "rpc.test")  # never started: no broker
    worker.register("test.echo", Ask, echo)
    assert await InMemoryRpcClient(worker.router).call("test.echo", Ask(5), Answer) == Answer(5)


@pytest.mark.parametrize(
    ("raised", "error", "error_type"),
    [
        (NotFound("no such thing"), RpcNotFound, "not_found"),
        (BadRequest("bad thing"), RpcRemoteError, "bad_request"),
        (Unavailable("down"), RpcRemoteUnavailable, "unavailable"),
        (Teapot("short and stout"), RpcRemoteError, "teapot"),
        (OutageError("connection refused"), RpcRemoteUnavailable, "unavailable"),
        (ZeroDivisionError("boom"), RpcRemoteError, "internal"),
    ],
)
async def test_each_handler_error_reaches_the_caller_typed(
    raised: Exception, error: type[RpcRemoteError], error_type: str
) -> None:
    async def fail(_ask: Ask) -> Answer:
        raise raised

    client = InMemoryRpcClient(router_with(fail=fail))
    with pytest.raises(error) as caught:
        await client.call("test.fail", Ask(1), Answer)
    assert type(caught.value) is error
    assert caught.value.error_type == error_type
    assert caught.value.method == "test.fail"


async def test_protocol_errors() -> None:
    async def unencodable(_ask: Ask) -> object:
        return object()

    client = InMemoryRpcClient(router_with(echo=echo, unencodable=unencodable))
    with pytest.raises(RpcUnroutable):
        await client.call("test.nobody", Ask(1), Answer)
    with pytest.raises(RpcRemoteError) as malformed:
        await client.call("test.echo", {"value": "not a number"}, Answer)
    assert malformed.value.error_type == "bad_request"
    with pytest.raises(RpcRemoteError) as unexpected:
        await client.call("test.echo", {"value": 1, "extra": 2}, Answer)
    assert unexpected.value.error_type == "bad_request"
    with pytest.raises(RpcRemoteError) as bad_reply:
        await client.call("test.echo", Ask(1), list)  # the result does not decode as a list
    assert bad_reply.value.error_type == "bad_reply"
    with pytest.raises(RpcRemoteError) as internal:
        await client.call("test.unencodable", Ask(1), Answer)
    assert internal.value.error_type == "internal"
    with pytest.raises(TypeError):  # an unencodable request fails in the caller
        await client.call("test.echo", object(), Answer)
    await client.close()
    with pytest.raises(RpcUnavailable):
        await client.ping()
    with pytest.raises(RpcUnavailable):
        await client.call("test.echo", Ask(1), Answer)


async def test_a_handler_past_its_deadline_is_a_timeout_and_is_cancelled() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(_ask: Ask) -> Answer:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    client = InMemoryRpcClient(router_with(slow=slow), timeout=5.0)
    with pytest.raises(RpcTimeout) as caught:
        await client.call("test.slow", Ask(1), Answer, timeout=0.05)
    assert caught.value.timeout == 0.05
    assert started.is_set()
    assert cancelled.is_set()


async def test_the_router_applies_the_deadline_it_is_sent() -> None:
    router = router_with(echo=echo)
    now = 1_000_000_000_000
    # The deadline (sent at + timeout) passed before delivery: rejected, no reply.
    with pytest.raises(Exception, match="deadline passed") as expired:
        await router.dispatch("test.echo", b'{"value":1}', now, 10, now + 11_000_000)
    assert getattr(expired.value, "error_type", None) == "expired"
    assert getattr(expired.value, "reply", None) is False
    # Within it: answered.
    reply, outcome = await router.dispatch("test.echo", b'{"value":1}', now, 10, now + 1)
    assert (reply, outcome) == (b'{"result":{"value":1}}', "ok")


async def test_handler_middlewares_wrap_every_method_once_first_outermost() -> None:
    order: list[str] = []

    def tagged(name: str) -> Any:
        def middleware(method: str, handler: Handler) -> Handler:
            order.append(f"wrap {name} {method}")

            async def wrapped(request: Any) -> Any:
                order.append(f"{name} {method}")
                return await handler(request)

            return wrapped

        return middleware

    router = Router("rpc.test", [tagged("outer"), tagged("inner")])
    router.register("test.echo", Ask, echo)
    client = InMemoryRpcClient(router)
    await client.call("test.echo", Ask(1), Answer)
    await client.call("test.echo", Ask(2), Answer)
    assert order == [
        "wrap inner test.echo",
        "wrap outer test.echo",
        "outer test.echo",
        "inner test.echo",
        "outer test.echo",
        "inner test.echo",
    ]


async def test_spans_and_metrics_of_a_call() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def missing(_ask: Ask) -> Answer:
        raise NotFound("gone")

    client = InMemoryRpcClient(router_with(echo=echo, missing=missing), tracer_provider=provider)

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok_before = count("rpc_client_duration_seconds_count", method="test.echo", outcome="ok")
    errors_before = count("rpc_client_errors_total", method="test.missing", error_type="not_found")
    await client.call("test.echo", Ask(1), Answer)
    with pytest.raises(RpcNotFound):
        await client.call("test.missing", Ask(1), Answer)
    assert count("rpc_client_duration_seconds_count", method="test.echo", outcome="ok") == (
        ok_before + 1
    )
    assert count("rpc_client_errors_total", method="test.missing", error_type="not_found") == (
        errors_before + 1
    )
    assert count("rpc_client_errors_total", method="test.echo", error_type="timeout") == 0
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"call test.echo", "call test.missing"}
    ok, failed = spans["call test.echo"], spans["call test.missing"]
    assert ok.kind is SpanKind.CLIENT
    assert ok.attributes is not None
    assert ok.attributes["rpc.method"] == "test.echo"
    assert {"rpc.round_trip_ms", "rpc.handler_ms", "rpc.overhead_ms"} <= set(ok.attributes)
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "not_found"


async def test_a_call_middleware_composes_into_the_chain() -> None:
    from broker.rpc.calls import compose  # noqa: PLC0415 - the seam under test

    seen: list[str] = []

    async def note(call: Call, next_step: Next) -> Any:
        seen.append(call.method)
        return await next_step(call)

    async def round_trip(call: Call) -> tuple[bytes, Any]:
        return b'{"result":1}', None

    chain = compose([note], round_trip)
    assert await chain(Call("test.x", None, int, 1.0, {})) == (b'{"result":1}', None)
    assert seen == ["test.x"]
