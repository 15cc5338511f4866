"""A signed playlist through the queue, and its trace read back by id, raw and analysed.

The stack runs as processes over the real RabbitMQ with the OTLP sink of ``make run``. The trace
id comes from the response's ``traceresponse`` header, as the player gets it; the services are
stopped before the trace is read, so that every span has been exported (no polling).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from loadtest.analysis.critical_path import analyse_trace
from loadtest.analysis.traces import document_spans, group
from loadtest.devstack.stack import Stack
from tests.conftest import StackConfigFactory, free_port

pytestmark = pytest.mark.timeout(120)

# Flags: sampled (01), with level 2's random-trace-id flag (02) as the SDK sets it.
TRACERESPONSE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(URL(url, encoded=True)) as response:
        if response.content_type.endswith("json"):
            body = await response.json(content_type=None)
        elif response.content_type.startswith(("text/", "application/vnd.apple")):
            body = await response.text()
        else:
            body = await response.read()
        return response.status, body, response


async def test_playlist_through_the_queue_and_its_trace_by_id(
    stack_config: StackConfigFactory, http: aiohttp.ClientSession
) -> None:
    env = {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    async with Stack(stack_config(sink_port=free_port(), env=env)) as stack:
        base = stack.config.base_url
        sink = f"http://127.0.0.1:{stack.config.sink_port}"
        status, drama, _ = await get(http, f"{base}/dramas/1")
        assert status == 200
        episode = drama["episodes"][0]
        assert episode["stream"]["playlist"] == "/dramas/1/episodes/1/playlist.m3u8"

        status, playlist, response = await get(http, base + episode["stream"]["playlist"])
        assert status == 200
        assert response.content_type == "application/vnd.apple.mpegurl"
        assert response.headers["Cache-Control"] == "private, no-store"
        exposed = {
            h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")
        }
        assert exposed == {"server-timing", "traceresponse"}
        assert "stream;dur=" in response.headers["Server-Timing"]
        match = TRACERESPONSE.fullmatch(response.headers["traceresponse"])
        assert match is not None, response.headers["traceresponse"]
        trace_id, server_span_id = match.groups()
        segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
        assert len(segments) == 3
        for url in segments:
            assert "X-Amz-Signature=" in url
            status, _, segment = await get(http, url)
            assert (status, segment.content_type) == (200, "video/mp2t")

        status, problem, response = await get(http, f"{base}/dramas/1/episodes/999/playlist.m3u8")
        assert (status, response.content_type) == (404, "application/problem+json")
        assert problem["detail"] == "drama 1 has no episode 999"

        # Stopping the services flushes their span exporters into the sink, which stays up.
        for name in ("drama", "episode", "stream"):
            assert await stack.stop_process(name) == 0

        status, raw, _ = await get(http, f"{sink}/api/v3/traces/{trace_id}")
        assert status == 200
        spans = list(document_spans(raw))
        assert {span.trace_id for span in spans} == {trace_id}
        assert {span.service for span in spans} == {
            "drama-service",
            "episode-service",
            "stream-service",
        }
        server = next(span for span in spans if span.kind == "SERVER")
        assert server.span_id == server_span_id
        assert server.name == "GET /dramas/{id}/episodes/{number}/playlist.m3u8"
        names = {span.name for span in spans}
        assert {"call stream.playlist", "queue wait stream.playlist", "S3 GetObject"} <= names

        # Ids are matched without regard to case, as Jaeger matches them.
        status, analysed, _ = await get(http, f"{sink}/api/analysis/traces/{trace_id.upper()}")
        assert status == 200
        expected = analyse_trace(group(spans)[0])
        assert expected is not None
        assert analysed["duration_ms"] == expected.duration_us / 1000
        assert sum(analysed["categories"].values()) == pytest.approx(
            analysed["duration_ms"], abs=1e-6
        )
        assert analysed["orphans"] == 0
        by_name = {span["name"]: span for span in analysed["spans"]}
        assert len(analysed["spans"]) == len(spans)
        assert by_name["queue wait stream.playlist"]["category"] == "queue_wait"
        assert by_name["reply wait episode.list"]["category"] == "reply_wait"
        assert by_name["S3 GetObject"]["category"] == "s3"
        assert by_name["call episode.list"]["category"] == "broker"
        root = analysed["spans"][0]
        assert (root["span_id"], root["depth"], root["start_ms"]) == (server_span_id, 0, 0)
        on_path = {step["span_id"] for step in analysed["critical_path"]}
        assert {s["span_id"] for s in analysed["spans"] if s["critical"]} == on_path

        unknown = "0" * 31 + "1"
        for path in (f"/api/v3/traces/{unknown}", f"/api/analysis/traces/{unknown}"):
            status, error, _ = await get(http, sink + path)
            assert (status, error["error"]["httpCode"]) == (404, 404)
        status, error, _ = await get(http, f"{sink}/api/v3/traces/not-a-trace-id")
        assert (status, error["error"]["httpCode"]) == (400, 400)
