"""Span export micro benchmark: the official OTLP/protobuf exporter against the JSON one of
`broker.telemetry.otlp`.

What the batch processor's thread spends on one batch of ``--batch`` spans like ours (a SERVER
span and its CLIENT, PRODUCER, CONSUMER and INTERNAL children, ~10 attributes each), reported as
CPU µs a span, medians of alternating rounds:

- **encode**: the request body alone, the official ``encode_spans(...).SerializePartialToString()``
  against ``broker.telemetry.otlp_encode.encode_spans``;
- **export**: ``exporter.export(spans)``, encoding and the HTTP POST on a kept-alive connection to
  ``python -m loadtest sink`` (started here, in a process of its own, so that its CPU is not
  counted).

CPU time is this thread's (``time.thread_time_ns``): waiting for the sink's answer costs none.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as pb_encode
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import AnyValue

from broker.telemetry.otlp import OtlpJsonSpanExporter
from broker.telemetry.otlp import encode_spans as json_encode
from loadtest.devstack.config import free_port


def request_spans(count: int) -> list[ReadableSpan]:
    """``count`` finished spans, shaped like drama-service's for ``GET /dramas/{id}``."""
    memory = InMemorySpanExporter()
    resource = Resource.create({"service.name": "drama-service", "service.version": "0.1.0"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("drama_streaming.broker", "0.1.0")
    n = 0
    while len(memory.get_finished_spans()) < count:
        n += 1
        make_request(tracer, n)
    return list(memory.get_finished_spans()[:count])


def make_request(tracer: trace.Tracer, n: int) -> None:
    """The spans of drama-service's ``n``-th ``GET /dramas/{id}`` (7 of them), ended."""
    server: dict[str, AnyValue] = {
        "http.request.method": "GET",
        "http.route": "/dramas/{id}",
        "url.path": f"/dramas/{n}",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": 8080,
        "client.address": "127.0.0.1",
        "user_agent.original": "python-aiohttp/3.11",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    with tracer.start_as_current_span("GET /dramas/{id}", kind=trace.SpanKind.SERVER) as root:
        root.set_attributes(server)
        for method in ("episode.list", "stream.presign"):
            with tracer.start_as_current_span(f"call {method}", kind=trace.SpanKind.CLIENT) as s:
                with tracer.start_as_current_span(
                    f"send rpc:{method}",
                    kind=trace.SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "rabbitmq",
                        "messaging.operation.type": "send",
                        "messaging.operation.name": "send",
                        "messaging.destination.name": "rpc",
                        "messaging.rabbitmq.destination.routing_key": method,
                        "messaging.message.conversation_id": f"{n:032x}",
                        "messaging.message.body.size": 87,
                        "server.address": "127.0.0.1",
                        "server.port": 5672,
                        "network.transport": "tcp",
                    },
                ):
                    pass
                with tracer.start_as_current_span(f"reply wait {method}"):
                    pass
                s.set_attributes(
                    {
                        "rpc.system": "rabbitmq",
                        "rpc.method": method,
                        "rpc.round_trip_ms": 1.84,
                        "rpc.handler_ms": 0.61,
                        "rpc.overhead_ms": 1.23,
                        "rpc.queue_wait_ms": 0.21,
                        "rpc.reply_wait_ms": 0.33,
                        "messaging.system": "rabbitmq",
                        "messaging.message.conversation_id": f"{n:032x}",
                        "drama_streaming.cached": False,
                    }
                )


@contextmanager
def sink() -> Iterator[str]:
    """``python -m loadtest sink`` on a free port, in its own process; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "loadtest", "sink", "--port", str(port)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if "listening" not in line:
                raise SystemExit(f"the sink did not start: {line!r}")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.communicate(timeout=10)


def cpu_us_per_span(action: Callable[[], object], spans: int, repeat: int) -> float:
    start = time.thread_time_ns()
    for _ in range(repeat):
        action()
    return (time.thread_time_ns() - start) / 1e3 / repeat / spans


def measure(rounds: int, batch: int, repeat: int) -> dict[str, list[float]]:
    """Per-round samples in CPU µs a span, for each of the four actions."""
    spans = request_spans(batch)
    with sink() as url:
        exporters: dict[str, SpanExporter] = {
            "protobuf": OTLPSpanExporter(endpoint=f"{url}/v1/traces"),
            "json": OtlpJsonSpanExporter(f"{url}/v1/traces"),
        }
        actions: dict[str, Callable[[], object]] = {
            "encode protobuf": lambda: pb_encode(spans).SerializePartialToString(),
            "encode json": lambda: json_encode(spans),
            "export protobuf": lambda: exporters["protobuf"].export(spans),
            "export json": lambda: exporters["json"].export(spans),
        }
        for name, action in actions.items():  # warm up: imports, connections
            if action() is SpanExportResult.FAILURE:
                raise SystemExit(f"{name}: the sink refused the batch")
        samples: dict[str, list[float]] = {name: [] for name in actions}
        for n in range(rounds):
            for name in list(actions) if n % 2 == 0 else list(reversed(actions)):
                samples[name].append(cpu_us_per_span(actions[name], batch, repeat))
        for exporter in exporters.values():
            exporter.shutdown()
    return samples


def body_bytes(batch: int) -> dict[str, float]:
    """Request body bytes a span, uncompressed."""
    spans = request_spans(batch)
    return {
        "protobuf": len(pb_encode(spans).SerializePartialToString()) / batch,
        "json": len(json_encode(spans)) / batch,
    }


def report(samples: dict[str, list[float]], batch: int) -> str:
    median = {name: statistics.median(values) for name, values in samples.items()}
    size = body_bytes(batch)
    lines = [f"{f'µs a span, batch {batch}':<24}{'protobuf':>10}{'json':>8}{'ratio':>8}"]
    for kind in ("encode", "export"):
        protobuf, json = median[f"{kind} protobuf"], median[f"{kind} json"]
        lines.append(f"{kind:<24}{protobuf:>10.2f}{json:>8.2f}{protobuf / json:>7.1f}x")
    lines.append(f"{'body bytes a span':<24}{size['protobuf']:>10.0f}{size['json']:>8.0f}")
    lines.append(
        f"(CPU time of the exporting thread, medians of {len(samples['encode json'])} "
        "alternating rounds)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=512, help="spans a batch (default 512)")
    parser.add_argument("--repeat", type=int, default=10, help="batches a round (default 10)")
    args = parser.parse_args(argv)
    print(report(measure(args.rounds, args.batch, args.repeat), args.batch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
