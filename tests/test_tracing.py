"""One trace per request: the three services as processes, exporting OTLP to a receiver here."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.rpc import FaultRule, RpcWorker, send_fault_rule
from broker.service import ConfigError
from broker.telemetry import recorded_span, request_logged, set_request_log
from episode.contract import LIST, QUEUE, ListEpisodes
from loadtest.devstack.stack import Stack
from tests.conftest import StackConfigFactory
from tests.otlp import OtlpReceiver, Span, waterfall

pytestmark = pytest.mark.timeout(120)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def traced_stack(
    stack_config: StackConfigFactory, receiver: tuple[OtlpReceiver, str]
) -> StackFactory:
    def factory(**env: str) -> Stack:
        exporting = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver[1],
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_PROPAGATORS": "tracecontext,baggage,b3multi",
            # The whole waterfall, database included, on every request (the cache has its test).
            "CACHE_TTL_MS": "0",
            # A line for every sampled request: the log lines carry the trace ids.
            "REQUEST_LOG": "sampled",
        }
        return Stack(stack_config(env=exporting | env))

    return factory


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def server_span(spans: list[Span], route: str, trace_id: str | None = None) -> Span | None:
    for span in spans:
        if (
            span.kind == "SERVER"
            and span.name == f"GET {route}"
            and (trace_id is None or span.trace_id == trace_id)
        ):
            return span
    return None


RPC_SPANS = {
    # name: (service, kind, name of the parent)
    "call {m}": ("drama-service", "CLIENT", "GET {route}"),
    "send rpc:{m}": ("drama-service", "PRODUCER", "call {m}"),
    "queue wait {m}": ("{worker}", "INTERNAL", "send rpc:{m}"),
    "process {queue} {m}": ("{worker}", "CONSUMER", "send rpc:{m}"),
    "reply wait {m}": ("drama-service", "INTERNAL", "send rpc:{m}"),
}
WORKERS = {
    "episode.list": ("episode-service", "rpc.episode"),
    "stream.presign": ("stream-service", "rpc.stream"),
}


def expected_tree(route: str) -> dict[str, tuple[str, str, str]]:
    tree = {}
    for method, (worker, queue) in WORKERS.items():
        for name, (service, kind, parent) in RPC_SPANS.items():
            fill = {"m": method, "queue": queue, "worker": worker, "route": route}
            tree[name.format(**fill)] = (service.format(**fill), kind, parent.format(**fill))
    tree["S3 presign"] = ("stream-service", "INTERNAL", "process rpc.stream stream.presign")
    return tree


def complete(trace: list[Span], route: str) -> bool:
    names = {s.name for s in trace}
    selects = {s.service for s in trace if s.kind == "CLIENT" and s.name.startswith("SELECT")}
    return (
        set(expected_tree(route)) <= names
        and f"GET {route}" in names
        and {"drama-service", "episode-service"} <= selects
    )


def assert_tree(trace: list[Span], route: str) -> None:
    by_id = {s.span_id: s for s in trace}
    names = [s.name for s in trace]
    (server,) = [s for s in trace if s.name == f"GET {route}"]
    assert (server.service, server.kind) == ("drama-service", "SERVER")
    for name, (service, kind, parent) in expected_tree(route).items():
        assert names.count(name) == 1, (name, names)  # batched: one call per method
        (span,) = [s for s in trace if s.name == name]
        assert (span.service, span.kind) == (service, kind), name
        assert by_id[span.parent_id].name == parent, name
    for span in trace:
        if span.kind == "CLIENT" and span.name.startswith("SELECT"):
            owner = by_id[span.parent_id]
            if span.service == "drama-service":
                assert owner.name == f"GET {route}"
            else:
                assert owner.kind == "CONSUMER"
                assert owner.service == span.service
    # Nothing recorded twice, nothing orphaned.
    assert len({s.span_id for s in trace}) == len(trace)
    assert all(s.parent_id in by_id for s in trace if s is not server)


def log_lines(workdir: Path, service: str, trace_id: str) -> list[dict[str, Any]]:
    lines = []
    for raw in (workdir / f"{service}.log").read_text().splitlines():
        if raw.startswith("{"):
            record = json.loads(raw)
            if record.get("trace_id") == trace_id:
                lines.append(record)
    return lines


async def test_detail_request_is_one_trace_across_three_services(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]
    async with traced_stack() as stack:
        for probe in ("/healthz", "/readyz", "/openapi.json"):  # not traced: no other trace
            async with http.get(f"{stack.config.base_url}{probe}") as response:
                assert response.status == 200
        async with http.get(f"{stack.config.base_url}/dramas/1") as response:
            assert response.status == 200
            timing = response.headers["Server-Timing"]
            traceresponse = response.headers["traceresponse"]

        def arrived(spans: list[Span]) -> bool:
            server = server_span(spans, "/dramas/{id}")
            return server is not None and complete(otlp.trace(server.trace_id), "/dramas/{id}")

        await otlp.wait_for(arrived)
        server = server_span(otlp.spans, "/dramas/{id}")
        assert server is not None
        assert server.parent_id == ""  # no traceparent came in: the request starts the trace
        # W3C traceresponse names the trace and the SERVER span, sampled (the player reads it).
        assert re.fullmatch(f"00-{server.trace_id}-{server.span_id}-0[13]", traceresponse)
        assert server.attributes["http.response.status_code"] == 200
        assert {s.trace_id for s in otlp.spans} == {server.trace_id}  # exactly one trace
        trace = otlp.trace(server.trace_id)
        assert {s.service for s in trace} == {"drama-service", "episode-service", "stream-service"}
        assert_tree(trace, "/dramas/{id}")
        # docs/tracing.md shows this picture of a real trace.
        picture = waterfall(trace)
        assert len(picture.splitlines()) == len(trace)
        print(picture)
        # The call span carries the skew-free split of its round trip.
        (call,) = [s for s in trace if s.name == "call episode.list"]
        attrs = call.attributes
        assert attrs["rpc.overhead_ms"] == pytest.approx(
            attrs["rpc.round_trip_ms"] - attrs["rpc.handler_ms"]
        )
        (send,) = [s for s in trace if s.name == "send rpc:episode.list"]
        assert send.attributes["messaging.system"] == "rabbitmq"
        assert send.attributes["messaging.destination.name"] == "rpc"
        assert send.attributes["messaging.rabbitmq.destination.routing_key"] == "episode.list"
        assert send.attributes["messaging.message.conversation_id"]
        assert {part.split(";")[0] for part in timing.split(", ")} == {
            "db",
            "episode",
            "stream",
            "queue",
            "total",
        }
        # Every process logged inside the request, with its trace id.
        workdir = stack.config.workdir
        for service in ("drama", "episode", "stream"):
            lines = log_lines(workdir, service, server.trace_id)
            assert lines, f"{service} logged nothing with the trace id"
            assert all(len(line["span_id"]) == 16 for line in lines)


async def test_cache_answers_repeats_and_steps_aside_for_a_slow_database(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]

    async def detail(stack: Stack) -> list[Span]:
        """One GET /dramas/1; the names of its trace's database spans, by service."""
        trace_id = uuid.uuid4().hex
        traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
        async with http.get(
            f"{stack.config.base_url}/dramas/1", headers={"traceparent": traceparent}
        ) as response:
            assert response.status == 200

        def arrived(spans: list[Span]) -> bool:
            names = {s.name for s in spans if s.trace_id == trace_id}
            return set(expected_tree("/dramas/{id}")) | {"GET /dramas/{id}"} <= names

        await otlp.wait_for(arrived)
        return otlp.trace(trace_id)

    def database(trace: list[Span]) -> set[str]:
        return {s.service for s in trace if "db.system" in s.attributes}

    async with traced_stack(CACHE_TTL_MS="60000") as stack:
        assert database(await detail(stack)) == {"drama-service", "episode-service"}
        assert database(await detail(stack)) == set()  # both answered from their caches
        rule = FaultRule(method="episode.list", db_delay_ms=1)
        assert await send_fault_rule(stack.config.amqp_url, rule, expect=1, wait=10)
        # A slow-database fault must reach the database: the cache steps aside.
        assert database(await detail(stack)) == {"episode-service"}


async def test_page_is_one_trace_with_batched_calls(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]
    async with traced_stack() as stack:
        for _ in range(2):
            async with http.get(f"{stack.config.base_url}/dramas?limit=10") as response:
                assert response.status == 200

        def arrived(spans: list[Span]) -> bool:
            servers = [s for s in spans if s.name == "GET /dramas"]
            return len(servers) == 2 and all(
                complete(otlp.trace(s.trace_id), "/dramas") for s in servers
            )

        await otlp.wait_for(arrived)
    servers = [s for s in otlp.spans if s.name == "GET /dramas"]
    assert len({s.trace_id for s in servers}) == 2  # one trace per request
    for server in servers:
        assert_tree(otlp.trace(server.trace_id), "/dramas")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, id="w3c"),
        pytest.param(
            {"X-B3-TraceId": TRACE_ID, "X-B3-SpanId": PARENT_ID, "X-B3-Sampled": "1"}, id="b3"
        ),
    ],
)
async def test_incoming_context_is_continued(
    headers: dict[str, str],
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]
    async with traced_stack() as stack:
        async with http.get(f"{stack.config.base_url}/dramas/2", headers=headers) as response:
            assert response.status == 200
        await otlp.wait_for(lambda spans: complete(otlp.trace(TRACE_ID), "/dramas/{id}"))
    server = server_span(otlp.spans, "/dramas/{id}", TRACE_ID)
    assert server is not None
    assert server.parent_id == PARENT_ID
    assert_tree(otlp.trace(TRACE_ID), "/dramas/{id}")


@pytest.mark.timing  # the waits must add up to the callers' overhead within 20% + 2 ms a call
async def test_queue_wait_is_real(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]
    burst = 12
    async with traced_stack(PREFETCH="1") as stack:
        base = stack.config.base_url
        # A handler of a known 20 ms (pre-signing alone takes well under 1 ms): one at a time,
        # each request waits behind those before it by whole handler times, not by noise. 20,
        # not 10: episode.list feeds this queue, and on a busy machine it took ~10 ms a request.
        rule = FaultRule(method="stream.presign", delay_ms=20)
        assert await send_fault_rule(stack.config.amqp_url, rule, expect=1, wait=10)
        responses = await asyncio.gather(
            *(http.get(f"{base}/dramas/{i % 20 + 1}") for i in range(burst))
        )
        assert [r.status for r in responses] == [200] * burst
        for r in responses:
            r.release()

        def arrived(spans: list[Span]) -> bool:
            names = [s.name for s in spans]
            return (
                names.count("queue wait stream.presign") == burst
                and names.count("call stream.presign") == burst
            )

        await otlp.wait_for(arrived)
    waits = sorted(
        (s for s in otlp.spans if s.name == "queue wait stream.presign"), key=lambda s: s.end_ns
    )
    calls = [s for s in otlp.spans if s.name == "call stream.presign"]
    wait_ms = [s.duration_ms for s in waits]
    # One request at a time, each holding the worker for at least the rule's 20 ms: a request
    # waited at least 20 ms for every other delivered between its publish and its own delivery.
    # (Not "later deliveries waited longer": episode.list, also one at a time, paces the
    # publishes, and on a busy machine the waits level off at the pace; CI.)
    ahead = [sum(w.start_ns < o.end_ns < w.end_ns for o in waits) for w in waits]
    assert max(ahead) >= 3, ahead  # the burst did queue
    for n, wait in zip(ahead, wait_ms, strict=True):
        assert wait >= 19 * n, (ahead, wait_ms)  # 19: uvloop's timers have 1 ms granularity
    assert wait_ms[-1] > 3 * wait_ms[0], wait_ms
    # The callee's per-message waits add up to the caller's skew-free overhead (round trip -
    # handler) less what the broker hops and the reply path take. Tolerance: that rest is at
    # most 20% of the overhead plus 2 ms a call (2 cores, 3 services, broker and load at once).
    total_wait = sum(wait_ms)
    total_overhead = sum(s.attributes["rpc.overhead_ms"] for s in calls)
    assert total_wait <= total_overhead
    assert total_overhead - total_wait <= 0.2 * total_overhead + 2 * burst, (
        total_overhead,
        total_wait,
    )


class Broken:
    async def list_episodes(self, request: ListEpisodes) -> None:
        raise RuntimeError("the database is on fire")


@asynccontextmanager
async def exporting_provider(endpoint: str) -> AsyncIterator[TracerProvider]:
    """A provider exporting to the receiver, which runs on this loop: the export happens on the
    batch processor's thread, and the final flush off the loop, or they would wait on it."""
    provider = TracerProvider(resource=Resource({"service.name": "broken-episode-service"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), schedule_delay_millis=50
        )
    )
    try:
        yield provider
    finally:
        await asyncio.to_thread(provider.shutdown)


async def test_failures_leave_error_spans(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp, endpoint = receiver
    async with traced_stack(RPC_TIMEOUT_MS="500") as stack:
        base = stack.config.base_url
        assert await stack.stop_process("episode") == 0
        statuses = {}
        # A worker that fails: its own CONSUMER span and the caller's call span say so.
        async with exporting_provider(endpoint) as provider:
            broken = RpcWorker(stack.config.amqp_url, QUEUE, tracer_provider=provider)
            broken.register(LIST, ListEpisodes, Broken().list_episodes)
            async with broken, http.get(f"{base}/dramas/3") as response:
                statuses["internal"] = response.status
        # Nobody consumes the queue: the call times out.
        async with http.get(f"{base}/dramas/4") as response:
            statuses["timeout"] = response.status
        # Nobody is bound to the method: the broker returns the request.
        connection = await aio_pika.connect(stack.config.amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(QUEUE)
        async with http.get(f"{base}/dramas/5") as response:
            statuses["unroutable"] = response.status
            body = msgspec.json.decode(await response.read())
        assert statuses == {"internal": 502, "timeout": 504, "unroutable": 503}
        assert body["status"] == 503

        def arrived(spans: list[Span]) -> bool:
            calls = [s for s in spans if s.name == "call episode.list"]
            consumers = [s for s in spans if s.service == "broken-episode-service"]
            servers = [s for s in spans if s.kind == "SERVER"]
            return len(calls) == 3 and len(servers) == 3 and len(consumers) >= 1

        await otlp.wait_for(arrived)
    calls = sorted(
        (s for s in otlp.spans if s.name == "call episode.list"), key=lambda s: s.start_ns
    )
    assert [(c.error, c.attributes.get("error.type")) for c in calls] == [
        (True, "internal"),
        (True, "timeout"),
        (True, "unroutable"),
    ]
    servers = sorted((s for s in otlp.spans if s.kind == "SERVER"), key=lambda s: s.start_ns)
    assert [(s.error, s.attributes["http.response.status_code"]) for s in servers] == [
        (True, 502),
        (True, 504),
        (True, 503),
    ]
    (consumer,) = [
        s for s in otlp.spans if s.service == "broken-episode-service" and s.kind == "CONSUMER"
    ]
    assert consumer.error
    assert consumer.attributes["error.type"] == "internal"
    assert consumer.trace_id == calls[0].trace_id
    # The broker's return comes after the send span has ended (requests are not confirmed):
    # the call span above carries "unroutable", the send span is there and not failed.
    (producer,) = [s for s in otlp.trace(calls[2].trace_id) if s.name == "send rpc:episode.list"]
    assert not producer.error


async def test_tracing_switched_off_exports_nothing_and_stays_quiet(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    otlp = receiver[0]
    async with traced_stack(OTEL_SDK_DISABLED="true") as stack:
        for path in ("/dramas/1", "/dramas?limit=5"):
            async with http.get(f"{stack.config.base_url}{path}") as response:
                assert response.status == 200
                assert "Server-Timing" in response.headers  # the header does not need tracing
                assert "traceresponse" not in response.headers  # no trace to name
    # The services have exited: anything batched would have been flushed by now.
    assert otlp.spans == []
    for service in ("drama", "episode", "stream"):
        for raw in (stack.config.workdir / f"{service}.log").read_text().splitlines():
            record = json.loads(raw) if raw.startswith("{") else {"message": raw}
            assert "trace_id" not in record, raw
            assert record.get("level") not in ("warning", "error"), raw


async def test_unsampled_requests_make_no_spans_and_log_only_failures(
    traced_stack: StackFactory,
    receiver: tuple[OtlpReceiver, str],
    http: aiohttp.ClientSession,
) -> None:
    """A trace the sampler turned down costs no span anywhere (none of the workers' spans turns
    into a root of its own) and, under REQUEST_LOG=sampled, no request line unless it failed;
    under the default (errors), a sampled one gets none either."""
    otlp = receiver[0]
    quiet, missing, sampled = (uuid.uuid4().hex for _ in range(3))

    def traceparent(trace_id: str, flags: str) -> dict[str, str]:
        return {"traceparent": f"00-{trace_id}-{PARENT_ID}-{flags}"}

    async with traced_stack() as stack:
        base = stack.config.base_url
        async with http.get(f"{base}/dramas/1", headers=traceparent(quiet, "00")) as response:
            assert response.status == 200
            # The trace goes on, unsampled: the page is told there is nothing to fetch.
            assert re.fullmatch(f"00-{quiet}-[0-9a-f]{{16}}-00", response.headers["traceresponse"])
        async with http.get(f"{base}/dramas/999", headers=traceparent(missing, "00")) as response:
            assert response.status == 404
        # A sampled request after them: its spans arriving prove the export works.
        async with http.get(f"{base}/dramas/2", headers=traceparent(sampled, "01")) as response:
            assert response.status == 200
        await otlp.wait_for(lambda spans: complete(otlp.trace(sampled), "/dramas/{id}"))
    # The services have exited and flushed: the unsampled requests left nothing.
    assert {s.trace_id for s in otlp.spans} == {sampled}
    workdir = stack.config.workdir

    def request_lines(service: str, trace_id: str) -> list[str]:
        return [
            record["message"]
            for record in log_lines(workdir, service, trace_id)
            if record["message"].startswith(("http ", "rpc "))
        ]

    for service in ("drama", "episode", "stream"):
        assert request_lines(service, quiet) == [], service
        assert request_lines(service, sampled), service
    (not_found,) = request_lines("drama", missing)
    assert "status=404" in not_found


def test_request_log_policy() -> None:
    tracer = TracerProvider().get_tracer(__name__)  # samples everything
    recorded = tracer.start_span("recorded")
    turned_down = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, is_remote=False, trace_flags=trace.TraceFlags(0))
    )
    try:
        cases = {
            "sampled": [True, False, True, True],
            "all": [True, True, True, True],
            "errors": [False, False, True, True],
        }
        for policy, expected in cases.items():
            set_request_log(policy)
            pairs = ((True, recorded), (True, turned_down), (False, recorded), (False, turned_down))
            got = [request_logged(ok, span) for ok, span in pairs]
            assert got == expected, policy
        with pytest.raises(ConfigError):
            set_request_log("some")
    finally:
        set_request_log("errors")  # the default


def test_recorded_span_only_where_it_records() -> None:
    """Under a parent the sampler turned down, no span is made and the context is left as it
    is; under a sampled one, or at the root, the span is the SDK's and records."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # parent-based, always on at the root
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(__name__)

    def under(flags: int) -> trace.NonRecordingSpan:
        parent = trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(flags))
        return trace.NonRecordingSpan(parent)

    with trace.use_span(under(0)) as before, recorded_span(tracer, provider, "quiet") as span:
        assert span is trace.INVALID_SPAN
        assert trace.get_current_span() is before
    with (
        trace.use_span(under(1)),
        recorded_span(tracer, provider, "loud", attributes={"k": 1}) as span,
    ):
        assert span.is_recording()
        assert trace.get_current_span() is span
    with recorded_span(tracer, provider, "root") as span:
        assert span.is_recording()
    assert [(s.name, s.parent and s.parent.span_id) for s in exporter.get_finished_spans()] == [
        ("loud", 2),
        ("root", None),
    ]
    provider.shutdown()
