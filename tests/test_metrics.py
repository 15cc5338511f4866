"""The services' /metrics after real traffic: every metric, its labels, and trace exemplars."""

from __future__ import annotations

import json

import aio_pika
import aiohttp
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Sample

from loadtest.devstack.stack import Stack

pytestmark = pytest.mark.timeout(120)

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


async def scrape(http: aiohttp.ClientSession, url: str, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        if accept:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        return await response.text()


def samples(text: str) -> list[Sample]:
    return [s for family in parse_text(text) for s in family.samples]


def count(found: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def send_malformed(amqp_url: str) -> None:
    """A request that is not JSON, straight onto the exchange; returns once it is answered."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange("rpc")
        await exchange.publish(
            aio_pika.Message(b"not json", reply_to=replies.name, correlation_id="bad"),
            routing_key="episode.list",
        )
        async with replies.iterator() as it:
            reply = await anext(it)
            await reply.ack()
    assert b"bad_request" in reply.body


async def test_metrics_after_traffic(stack: Stack) -> None:
    base = stack.config.base_url
    workers = {
        "episode": f"http://127.0.0.1:{stack.config.episode_metrics_port}/metrics",
        "stream": f"http://127.0.0.1:{stack.config.stream_metrics_port}/metrics",
    }
    async with aiohttp.ClientSession() as http:
        for path, status in [
            ("/dramas/1", 200),
            ("/dramas/2", 200),
            ("/dramas?limit=3", 200),
            ("/dramas/999", 404),
            ("/dramas/abc", 400),
            ("/no/such/path", 404),
        ]:
            async with http.get(base + path) as response:
                assert response.status == status
        await send_malformed(stack.config.amqp_url)
        drama = samples(await scrape(http, f"{base}/metrics"))
        episode = samples(await scrape(http, workers["episode"]))
        stream = samples(await scrape(http, workers["stream"]))
        openmetrics = {
            name: await scrape(http, url, OPENMETRICS)
            for name, url in {"drama": f"{base}/metrics", **workers}.items()
        }

    duration = "http_server_request_duration_seconds_count"
    assert count(drama, duration, route="/dramas/{id}", method="GET", status="200") == 2
    assert count(drama, duration, route="/dramas", method="GET", status="200") == 1
    assert count(drama, duration, route="/dramas/{id}", status="404") == 1
    assert count(drama, duration, route="/dramas/{id}", status="400") == 1
    assert count(drama, duration, route="unmatched", status="404") == 1  # no raw paths
    assert not any("/no/such" in str(s.labels) for s in drama)
    for method in ("episode.list", "stream.presign"):
        # 1 + 1 + 1 batched page call each (the 404 stops before any call).
        assert count(drama, "rpc_client_duration_seconds_count", method=method, outcome="ok") == 3
        assert count(drama, "rpc_overhead_seconds_count", method=method) == 3
        assert count(drama, "rpc_client_calls_in_flight", method=method) == 0
    assert count(drama, "http_server_requests_in_flight") == 1  # the scrape itself
    for found, method in ((episode, "episode.list"), (stream, "stream.presign")):
        assert count(found, "rpc_queue_wait_seconds_count", method=method) == 3
        assert count(found, "rpc_handler_duration_seconds_count", method=method, outcome="ok") == 3
        assert count(found, "rpc_handler_in_flight", method=method) == 0
        assert count(found, "process_cpu_seconds_total") > 0
    assert count(episode, "rpc_dead_lettered_total", queue="rpc.episode", reason="bad_request") == 1
    assert count(episode, "rpc_handler_duration_seconds_count", outcome="bad_request") == 1

    # Exemplars: OpenMetrics histograms carry the trace ids of the requests they measured.
    logged = set()
    for service in ("drama", "episode", "stream"):
        for raw in (stack.config.workdir / f"{service}.log").read_text().splitlines():
            if raw.startswith("{") and "trace_id" in (record := json.loads(raw)):
                logged.add(record["trace_id"])
    for name, text in openmetrics.items():
        exemplars = [
            s.exemplar
            for family in parse_om(text)  # type: ignore[no-untyped-call]
            for s in family.samples
            if s.exemplar is not None and s.name.endswith("_bucket")
        ]
        assert exemplars, f"{name}: no exemplars"
        trace_ids = {e.labels["trace_id"] for e in exemplars}
        assert all(len(t) == 32 for t in trace_ids)
        assert trace_ids <= logged, f"{name}: exemplar trace ids that no request logged"


async def test_error_counters_and_outcomes(stack: Stack) -> None:
    base = stack.config.base_url
    async with aiohttp.ClientSession() as http:
        # The queue stays bound with nobody consuming: the call waits out its 3 s timeout.
        assert await stack.stop_process("episode") == 0
        async with http.get(f"{base}/dramas/1") as response:
            status = response.status
        found = samples(await scrape(http, f"{base}/metrics"))
    assert status == 504
    assert count(found, "rpc_client_errors_total", method="episode.list", error_type="timeout") == 1
    assert (
        count(found, "rpc_client_duration_seconds_count", method="episode.list", outcome="timeout")
        == 1
    )
    assert (
        count(
            found, "http_server_request_duration_seconds_count", route="/dramas/{id}", status="504"
        )
        == 1
    )
