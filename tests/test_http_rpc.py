"""RPC over HTTP against a real worker: the behaviours of test_rpc.py that apply, traces, and
the whole stack driven over HTTP answering as it does over the queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from broker import (
    ConfigError,
    HttpRpcClient,
    RpcNotFound,
    RpcRemoteError,
    RpcTimeout,
    RpcUnavailable,
    RpcUnroutable,
    RpcWorker,
    Topology,
    serving_rpc_http,
)
from drama.settings import Settings as DramaSettings
from episode.settings import Settings as EpisodeSettings
from loadtest.devstack.stack import Stack
from tests.conftest import StackConfigFactory, free_port
from tests.test_rpc import Answer, Ask, Service


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
async def worker_url(
    amqp_url: str,
    queue_name: str,
    topology: Topology,
    service: Service,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> AsyncIterator[str]:
    """A worker consuming its queue and serving the same methods over HTTP; its base URL."""
    worker = RpcWorker(amqp_url, queue_name, topology=topology, grace=5, tracer_provider=spans[0])
    worker.register("t.echo", Ask, service.echo)
    worker.register("t.missing", Ask, service.missing)
    worker.register("t.crash", Ask, service.crash)
    worker.register("t.cancel", Ask, service.cancel)
    port = free_port()
    async with worker, serving_rpc_http(worker, "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"
        service.release.set()


@pytest.fixture
async def client(
    worker_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[HttpRpcClient]:
    urls = {"t.": worker_url}
    async with HttpRpcClient(urls, timeout=2.0, tracer_provider=spans[0]) as client:
        yield client


async def test_round_trip(client: HttpRpcClient) -> None:
    assert await client.call("t.echo", Ask(7), Answer) == Answer(7)


async def test_concurrent_calls_get_their_own_replies(client: HttpRpcClient) -> None:
    results = await asyncio.gather(*(client.call("t.echo", Ask(i), Answer) for i in range(200)))
    assert [r.value for r in results] == list(range(200))


async def test_not_found_reply(client: HttpRpcClient) -> None:
    with pytest.raises(RpcNotFound) as caught:
        await client.call("t.missing", Ask(3), Answer)
    assert caught.value.error_type == "not_found"
    assert "no thing 3" in str(caught.value)


async def test_handler_crash_is_an_internal_error(client: HttpRpcClient) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.crash", Ask(1), Answer)
    assert caught.value.error_type == "internal"
    assert "boom" not in str(caught.value)  # no internals leak to the caller


async def test_handler_raising_cancelled_is_an_internal_error(client: HttpRpcClient) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.cancel", Ask(1), Answer)
    assert caught.value.error_type == "internal"
    assert await client.call("t.echo", Ask(2), Answer) == Answer(2)


async def test_invalid_request_is_a_bad_request(client: HttpRpcClient) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.echo", {"value": "seven"}, Answer)
    assert caught.value.error_type == "bad_request"
    assert "Expected `int`" in caught.value.remote_message


async def test_wire_statuses_and_envelopes(worker_url: str) -> None:
    """What a proxy or curl sees: the AMQP reply envelope, with a status that matches it."""
    ask = b'{"value": 5}'
    cases = [
        ("t.echo", ask, 200, None),
        ("t.echo", b"{not json", 400, "bad_request"),
        ("t.missing", ask, 404, "not_found"),
        ("t.retired", ask, 404, "unknown_method"),
        ("t.crash", ask, 500, "internal"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, body, status, error_type in cases:
            async with http.post(f"{worker_url}/rpc/{method}", data=body) as response:
                reply = await response.json()
                assert (response.status, response.content_type) == (status, "application/json")
                assert int(response.headers["x-handler-ns"]) >= 0
            if error_type is None:
                assert reply == {"result": {"value": 5}}
            else:
                assert reply["error"]["type"] == error_type, method
                assert reply["error"]["message"]


async def test_unknown_method_replies_unknown_method(client: HttpRpcClient) -> None:
    with pytest.raises(RpcRemoteError) as caught:
        await client.call("t.retired", Ask(1), Answer)
    assert caught.value.error_type == "unknown_method"


async def test_method_without_url_is_unroutable_at_once(client: HttpRpcClient) -> None:
    started = time.monotonic()
    with pytest.raises(RpcUnroutable):
        await client.call("other.thing", Ask(1), Answer, timeout=5)
    assert time.monotonic() - started < 0.5


async def test_timeout(client: HttpRpcClient) -> None:
    started = time.monotonic()
    with pytest.raises(RpcTimeout):
        await client.call("t.echo", Ask(1, block=True), Answer, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.3


async def test_dead_worker_fails_fast() -> None:
    port = free_port()  # nothing listens there
    async with HttpRpcClient({"t.": f"http://127.0.0.1:{port}"}, timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(RpcUnavailable) as caught:
            await client.call("t.echo", Ask(1), Answer)
        assert time.monotonic() - started < 0.5  # a tenth of the timeout
    assert caught.value.error_type == "unavailable"


async def test_a_proxy_error_without_a_reply_is_unavailable() -> None:
    """A 503 from something in between (a mesh with no healthy upstream) is no worker's."""

    async def no_upstream(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="no healthy upstream")

    app = web.Application()
    app.router.add_post("/rpc/{method}", no_upstream)
    async with TestServer(app) as proxy, HttpRpcClient({"t.": str(proxy.make_url(""))}) as client:
        with pytest.raises(RpcUnavailable) as caught:
            await client.call("t.echo", Ask(1), Answer)
    assert "HTTP 503" in str(caught.value)


async def test_closed_client_is_unavailable(worker_url: str) -> None:
    client = HttpRpcClient({"t.": worker_url})
    await client.connect()
    await client.ping()
    await client.close()
    with pytest.raises(RpcUnavailable):
        await client.ping()
    with pytest.raises(RpcUnavailable):
        await client.call("t.echo", Ask(1), Answer)


async def test_metrics_have_the_amqp_names(client: HttpRpcClient) -> None:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        "client_ok": sample("rpc_client_duration_seconds_count", method="t.echo", outcome="ok"),
        "handler_ok": sample("rpc_handler_duration_seconds_count", method="t.echo", outcome="ok"),
        "not_found": sample("rpc_client_errors_total", method="t.missing", error_type="not_found"),
        "overhead": sample("rpc_overhead_seconds_count", method="t.echo"),
    }
    await client.call("t.echo", Ask(1), Answer)
    with pytest.raises(RpcNotFound):
        await client.call("t.missing", Ask(1), Answer)
    after = {
        "client_ok": sample("rpc_client_duration_seconds_count", method="t.echo", outcome="ok"),
        "handler_ok": sample("rpc_handler_duration_seconds_count", method="t.echo", outcome="ok"),
        "not_found": sample("rpc_client_errors_total", method="t.missing", error_type="not_found"),
        "overhead": sample("rpc_overhead_seconds_count", method="t.echo"),
    }
    assert {k: after[k] - before[k] for k in before} == dict.fromkeys(before, 1.0)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


async def test_client_span_has_the_worker_server_span_as_child(
    client: HttpRpcClient, worker_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    await client.call("t.echo", Ask(1), Answer)
    with pytest.raises(RpcNotFound):
        await client.call("t.missing", Ask(1), Answer)
    finished = list(spans[1].get_finished_spans())
    call = _one(finished, "call t.echo")
    server = _one(finished, "POST /rpc/t.echo")
    assert (call.kind, server.kind) == (SpanKind.CLIENT, SpanKind.SERVER)
    assert call.context is not None
    assert server.context is not None
    assert server.parent is not None
    assert server.context.trace_id == call.context.trace_id
    assert server.parent.span_id == call.context.span_id
    assert server.parent.is_remote  # through the traceparent header, not the local context
    # The gap the analyser calls network: the server span lies inside the call.
    assert call.start_time is not None
    assert server.start_time is not None
    assert call.start_time <= server.start_time
    assert server.end_time is not None
    assert call.end_time is not None
    assert server.end_time <= call.end_time
    port = int(worker_url.rsplit(":", 1)[1])
    expected_call = {
        "rpc.system": "http",
        "rpc.method": "t.echo",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert dict(call.attributes or {}).items() >= expected_call.items()
    expected_server: dict[str, object] = {
        "rpc.method": "t.echo",
        "http.route": "/rpc/t.echo",
        "http.response.status_code": 200,
    }
    assert dict(server.attributes or {}).items() >= expected_server.items()
    # A worker's error marks both sides, with its type.
    missing_call = _one(finished, "call t.missing")
    missing_server = _one(finished, "POST /rpc/t.missing")
    for span in (missing_call, missing_server):
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "not_found"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RPC_TRANSPORT": "http"}, "EPISODE_RPC_URL"),
        ({"RPC_TRANSPORT": "http", "EPISODE_RPC_URL": "http://e:1"}, "STREAM_RPC_URL"),
        (
            {"RPC_TRANSPORT": "http", "EPISODE_RPC_URL": "e:1", "STREAM_RPC_URL": "http://s"},
            "EPISODE_RPC_URL must be an http",
        ),
        (
            {
                "RPC_TRANSPORT": "http",
                "EPISODE_RPC_URL": "http://e:x",
                "STREAM_RPC_URL": "http://s",
            },
            "EPISODE_RPC_URL has an invalid port",
        ),
        ({"RPC_TRANSPORT": "grpc"}, "RPC_TRANSPORT must be one of amqp, http"),
    ],
)
def test_drama_settings_name_the_missing_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DramaSettings.from_env(environ)


def test_settings_select_the_transport() -> None:
    assert DramaSettings.from_env({}).rpc_transport == "amqp"
    http = DramaSettings.from_env(
        {"RPC_TRANSPORT": "http", "EPISODE_RPC_URL": "http://e:9111", "STREAM_RPC_URL": "http://s"}
    )
    assert (http.rpc_transport, http.episode_rpc_url) == ("http", "http://e:9111")
    assert EpisodeSettings.from_env({}).worker.rpc_http_port is None  # off unless asked for
    assert EpisodeSettings.from_env({"RPC_HTTP_PORT": "9111"}).worker.rpc_http_port == 9111
    with pytest.raises(ConfigError, match="RPC_HTTP_PORT"):
        EpisodeSettings.from_env({"RPC_HTTP_PORT": "0"})


def _stable(body: Any) -> Any:
    """A response without what changes from one request to the next: the streams' signatures."""
    if isinstance(body, list):
        return [_stable(item) for item in body]
    if not isinstance(body, dict):
        return body
    if body.keys() == {"url", "expires_at"}:  # a stream: signed at the time of the request
        return {"url": body["url"].split("?", 1)[0]}
    return {key: _stable(value) for key, value in body.items()}


@pytest.mark.timeout(120)
async def test_stack_over_http_answers_as_over_the_queue(
    stack_config: StackConfigFactory,
) -> None:
    paths = ("/dramas/1", "/dramas?limit=5")
    async with Stack(stack_config(transport="http", env={"REQUEST_LOG": "all"})) as stack:
        # A second drama-service on the same workers, through the queue.
        amqp_port = free_port()
        await stack.start_process(
            "drama2", "drama", env={"HTTP_PORT": str(amqp_port), "RPC_TRANSPORT": "amqp"}
        )
        bases = {"http": stack.config.base_url, "amqp": f"http://127.0.0.1:{amqp_port}"}
        bodies: dict[tuple[str, str], tuple[int, Any]] = {}
        async with aiohttp.ClientSession() as http:
            for transport, base in bases.items():
                for path in paths:
                    async with http.get(base + path) as response:
                        bodies[transport, path] = (response.status, await response.json())
        workdir = stack.config.workdir
    detail = bodies["http", "/dramas/1"][1]
    assert len(detail["episodes"]) > 1
    assert len(bodies["http", "/dramas?limit=5"][1]["items"]) == 5
    for path in paths:
        status, over_http = bodies["http", path]
        assert status == 200
        assert _stable(over_http) == _stable(bodies["amqp", path][1]), path
        assert bodies["amqp", path][0] == 200
    # Each way was taken: the workers logged requests over both transports.
    for worker in ("episode", "stream"):
        lines = (workdir / f"{worker}.log").read_text()
        assert "transport=http" in lines
        assert "transport=amqp" in lines
