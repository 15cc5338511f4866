"""The tools on the real stack: one run at a time, early one-line failures, names an operator reads.

Everything here runs the commands as a person does (``python -m loadtest ...`` in a process of
its own) against the real services, RabbitMQ and the OTLP sink.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from loadtest.devstack.config import venv_python
from loadtest.devstack.stack import Stack
from tests.conftest import ROOT, StackConfigFactory, free_port

pytestmark = pytest.mark.timeout(180)


async def command(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def rabbitmqctl(*args: str) -> Any:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args, "--formatter", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def connection_names(vhost: str) -> list[str]:
    names = []
    for connection in rabbitmqctl("list_connections", "vhost", "client_properties"):
        if connection["vhost"] != vhost:
            continue
        for key, _type, value in connection["client_properties"]:
            if key == "connection_name":
                names.append(value)
    return names


@pytest.mark.timeout(300)
async def test_one_run_against_a_baseline_on_the_real_stack(
    stack_config: StackConfigFactory, tmp_path: Path, vhost: str
) -> None:
    """The README's walkthrough: a baseline run, a fault, a second run; analyse the second
    against the first, right after the load, in the table, the JSON and the HTML."""
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    config = stack_config(env=env, sink_port=free_port())
    amqp = {"AMQP_URL": config.amqp_url}
    async with Stack(config) as stack:
        assert stack.sinks_spans
        base = config.base_url
        runs = {}
        for run_id in ("base", "slow"):
            if run_id == "slow":
                code, out, err = await command(
                    "-m", "loadtest", "fault", "--method", "stream.presign", "--delay-ms", "40",
                    "--expect", "1", env=amqp,
                )  # fmt: skip
                assert code == 0, err
                assert "rpc.stream" in out
            code, out, err = await command(
                "-m", "loadtest", "load", "--url", base, "--rate", "40", "--duration", "1.5",
                "--warmup", "0", "--mix", "detail=1", "--arrivals", "constant",
                "--run-id", run_id, "--json", "-",
            )  # fmt: skip
            assert code == 0, err
            runs[run_id] = json.loads(out)
            assert runs[run_id]["ok"] == runs[run_id]["requests"] == 60

        # Operators' names, while everything is connected.
        names = connection_names(vhost)
        assert any(n.startswith("drama-service rpc-client ") for n in names), names
        assert any(n.startswith("episode-service rpc.episode ") for n in names), names
        assert any(n.startswith("stream-service rpc.stream ") for n in names), names
        host = socket.gethostname()
        pids = {name: process.pid for name, process in stack.processes.items()}
        assert f"stream-service rpc.stream {host}-{pids['stream']}" in names
        queues = {q["name"] for q in rabbitmqctl("list_queues", "-p", vhost, "name")}
        assert f"rpc.control.stream.{host}-{pids['stream']}" in queues
        assert f"rpc.control.episode.{host}-{pids['episode']}" in queues

        # Right after the load: the analyser waits for the exporters, then reads.
        html = tmp_path / "report.html"
        spans = str(config.spans_path)
        code, out, err = await command(
            "-m", "loadtest", "analyze", "--input", spans, "--run", "slow", "--baseline", "base",
            "--operation", "GET /dramas/{id}", "--flush-wait", "2", "--json", "--no-per-trace",
            "--html", str(html), "--trace-url", "http://player.test/#/trace/{trace_id}",
        )  # fmt: skip
        assert code == 0, err
        code_clear, _, err_clear = await command(
            "-m", "loadtest", "fault", "--clear", "--expect", "2", env=amqp
        )
        assert code_clear == 0, err_clear
    document = json.loads(out)
    # Only the fault run's detail requests, every one of them; the baseline run beside them.
    assert document["traces"] == 60
    assert document["selection"]["run"] == "slow"
    comparison = document["baseline"]
    assert comparison["baseline_traces"] == 60
    app_p50 = comparison["categories"]["app"]["p50"]
    assert app_p50["change_ms"] >= 35  # the 40 ms handler delay, on every trace
    assert app_p50["baseline_ms"] < 35 <= app_p50["ms"]
    assert comparison["duration"]["p50"]["change_ms"] >= 35
    assert len(app_p50["trace"]) == len(app_p50["baseline_trace"]) == 32
    assert document["slowest"][0]["duration_ms"] >= document["duration"]["p99_ms"]
    page = html.read_text()
    first = document["slowest"][0]["trace_id"]
    assert f'href="http://player.test/#/trace/{first}"' in page
    assert f'href="http://player.test/#/trace/{app_p50["baseline_trace"]}"' in page
    assert "<h2>Key</h2>" in page
    assert "a request waiting in a RabbitMQ queue" in page
    # Every fault command was answered; no worker logged the answer coming back to it.
    for name in ("episode", "stream"):
        log = (config.workdir / f"{name}.log").read_text()
        assert "fault rules now" in log
        assert "Unhandled message" not in log
        assert "Basic.Return" not in log


def otlp_line(trace_id: str, spans: list[tuple[str, str, int, int]]) -> str:
    """One sink line: spans (id, parent, start, end in ns) of drama-service, one trace."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "service.name", "value": {"stringValue": "drama-service"}}
                        ]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": span_id,
                                    "parentSpanId": parent,
                                    "name": f"op {span_id[-1]}",
                                    "kind": 2 if not parent else 1,
                                    "startTimeUnixNano": str(start),
                                    "endTimeUnixNano": str(end),
                                }
                                for span_id, parent, start, end in spans
                            ]
                        }
                    ],
                }
            ]
        }
    )


@pytest.mark.integration
async def test_analyze_right_after_the_spans_waits_for_the_rest(tmp_path: Path) -> None:
    """A trace whose child came in and whose root is still on its way: the analyser says it
    waits, and once the root is written (after that line), reads the whole trace."""
    now = time.time_ns()
    trace_id = "ab" * 16
    spans = tmp_path / "spans.jsonl"
    child = ("00000000000000b2", "00000000000000a1", now - 5_000_000, now - 1_000_000)
    spans.write_text(otlp_line(trace_id, [child]) + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "analyze", "--input", str(spans), "--flush-wait", "4",
        "--json", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
    assert "waiting" in line, line
    with spans.open("a") as out:
        out.write(otlp_line(trace_id, [("00000000000000a1", "", now - 9_000_000, now)]) + "\n")
    out_bytes, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    document = json.loads(out_bytes)
    assert document["traces"] == 1
    assert document["selection"]["incomplete_traces"] == 0
    assert document["per_trace"][0]["duration_ms"] == 9.0


@pytest.mark.integration
async def test_analyze_says_how_many_traces_look_incomplete(tmp_path: Path) -> None:
    old = time.time_ns() - 60 * 10**9  # long exported: nothing to wait for
    spans = tmp_path / "spans.jsonl"
    lines = [
        otlp_line("a1" * 16, [("00000000000000a1", "", old, old + 5_000_000)]),
        # its root never came: an orphan
        otlp_line("b2" * 16, [("00000000000000b2", "00000000000000ff", old, old + 1_000)]),
    ]
    spans.write_text("\n".join(lines) + "\n")
    code, out, err = await command("-m", "loadtest", "analyze", "--input", str(spans), "--json")
    assert code == 0, err
    assert "1 traces look incomplete" in err
    assert "waiting" not in err
    assert json.loads(out)["selection"]["incomplete_traces"] == 1


@pytest.mark.integration
async def test_a_window_and_a_run_that_select_nothing_say_so(tmp_path: Path) -> None:
    old = time.time_ns() - 3600 * 10**9
    spans = tmp_path / "spans.jsonl"
    spans.write_text(otlp_line("a1" * 16, [("00000000000000a1", "", old, old + 5_000_000)]) + "\n")
    base = ("-m", "loadtest", "analyze", "--input", str(spans))
    code, out, err = await command(*base, "--since", "2h", "--until", "30m")
    assert code == 0, err
    assert out.startswith("1 traces;")
    code, _, err = await command(*base, "--last", "30m")
    assert code == 1
    assert err.strip() == "analyze: 0 traces, fewer than --min-traces 1"
    code, _, err = await command(*base, "--run", "nothing")
    assert code == 1
    assert err.strip() == "analyze: 0 traces of run nothing, fewer than --min-traces 1"


def files_of(directory: Path) -> tuple[dict[str, int], list[Any]]:
    """Each file's size, and every line of them all."""
    files = list(directory.iterdir())
    lines = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    return {p.name: p.stat().st_size for p in files}, lines


@pytest.mark.integration
async def test_the_sink_rotates_its_file_and_analyze_reads_the_set(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "spans.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtest", "sink", "--port", str(port), "--out", str(out),
        "--max-mb", "0.001", "--backups", "2", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert "listening" in (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    import aiohttp  # noqa: PLC0415 - only this test posts exports

    now = time.time_ns() - 60 * 10**9
    ids = [f"{i:032x}" for i in range(1, 11)]
    async with aiohttp.ClientSession() as http:
        for trace_id in ids:  # each line ~500 bytes: rotated every other line
            body = otlp_line(trace_id, [("00000000000000a1", "", now, now + 1_000_000)])
            async with http.post(
                f"http://127.0.0.1:{port}/v1/traces",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 200
    process.terminate()
    await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0
    sizes, kept = files_of(tmp_path)
    assert sorted(sizes) == ["spans.jsonl", "spans.jsonl.1", "spans.jsonl.2"]
    assert all(size < 2048 for size in sizes.values())
    code, out_text, err = await command(
        "-m", "loadtest", "analyze", "--input", str(out), "--json", "--flush-wait", "0"
    )
    assert code == 0, err
    found = {t["trace_id"] for t in json.loads(out_text)["per_trace"]}
    # The newest traces, every one the kept files hold; the oldest were rotated away.
    assert len(found) == len(kept) < len(ids)
    assert found == set(ids[-len(found) :])


# --- make run: checked before anything starts ---------------------------------------------------


def stack_command(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "-m", "loadtest", "stack", "--workdir", str(tmp_path / "run"), "--http-port",
        str(free_port()), "--s3-port", str(free_port()), "--sink-port", str(free_port()),
        "--episode-metrics-port", str(free_port()), "--stream-metrics-port", str(free_port()),
        *extra,
    ]  # fmt: skip


async def test_make_run_with_its_port_taken_says_so_in_one_line(
    tmp_path: Path, amqp_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code, out, err = await command(
            *stack_command(tmp_path, "--http-port", str(port)), env={"AMQP_URL": amqp_url}
        )
    assert code == 1
    assert time.monotonic() - started < 20  # before seeding or starting anything
    assert err == (
        f"make run: port {port} (drama-service's HTTP) is in use: pick another with --http-port "
        "(make run HTTP_PORT=), or stop what listens there\n"
    )
    assert "Traceback" not in out + err
    assert not (tmp_path / "run" / "drama.log").exists()


async def test_make_run_with_a_wrong_password_or_vhost_says_what_to_set(
    tmp_path: Path, amqp_url: str
) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:not-the-password@")
    code, _, err = await command(*stack_command(tmp_path), env={"AMQP_URL": wrong})
    assert code == 1, err  # once 2, cause unseen: say it next time
    assert err.count("\n") == 1
    assert "refused the login of amqp://guest:***@" in err
    assert "ACCESS_REFUSED" in err
    assert "AMQP_URL=" in err
    assert "not-the-password" not in err
    missing = amqp_url.rstrip("/") + "/no-such-vhost-i22"
    code, _, err = await command(*stack_command(tmp_path), env={"AMQP_URL": missing})
    assert code == 1, err
    assert err.count("\n") == 1
    assert "vhost 'no-such-vhost-i22'" in err
    assert "rabbitmqctl add_vhost" in err


async def test_fault_with_a_wrong_password_fails_in_one_line(amqp_url: str) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:nope@")
    code, _, err = await command("-m", "loadtest", "fault", "--amqp-url", wrong, "--clear")
    assert code == 1
    assert err.count("\n") == 1
    assert "ACCESS_REFUSED" in err
    assert "nope" not in err


@pytest.mark.integration
def test_make_run_passes_http_port() -> None:
    done = subprocess.run(
        ["make", "-n", "run", "HTTP_PORT=18999", "STAMP="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert ".venv/bin/python -m loadtest stack --http-port 18999" in done.stdout


@pytest.mark.integration
def test_the_banner_names_a_python_that_works_as_printed() -> None:
    python = venv_python()
    assert python == str(Path(sys.executable).relative_to(ROOT)) or python == sys.executable
    done = subprocess.run(
        [python, "-m", "loadtest", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "analyze" in done.stdout
