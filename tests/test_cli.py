"""The command lines a person types: every option checked at parse time, help for newcomers.

Property tests throw arbitrary option values at each ``python -m loadtest`` command's parser:
either the command line is taken, or the command stops with exit 2 and one line naming the
option; nothing else (no traceback, no hang). The load generator itself runs on small valid
command lines against a real HTTP server: exit 0 only with a non-empty result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.analysis import command as analyze
from loadtest.bench import command as bench
from loadtest.bench import compare, scale
from loadtest.devstack import run as stack
from loadtest.devstack import sink
from loadtest.load import command as load
from loadtest.load import fault
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.timeout(120)

# Each command's parse step, as its main runs it (load and analyze check across options too).
PARSERS: dict[str, tuple[str, Callable[[list[str]], object], argparse.ArgumentParser]] = {
    "load": ("python -m loadtest load", load.parse, load.parser()),
    "analyze": ("python -m loadtest analyze", analyze.parse, analyze._parser()),
    "fault": ("python -m loadtest fault", fault.parse, fault.parser()),
    "sink": ("python -m loadtest sink", lambda a: sink.parser().parse_args(a), sink.parser()),
    "stack": ("python -m loadtest stack", lambda a: stack.parser().parse_args(a), stack.parser()),
    "compare": (
        "python -m loadtest compare",
        lambda a: compare.parser().parse_args(a),
        compare.parser(),
    ),
    "scale": ("python -m loadtest scale", lambda a: scale.parser().parse_args(a), scale.parser()),
    "bench": ("python -m loadtest bench", bench.parse, bench.parser()),
}

ODD_VALUES = [
    "", "-", "0", "-0", "-5", "-3", "1", "10", "1e309", "nan", "inf", "-inf", "0.0001",
    "10:5", "10:5:2", "1:2:3", "0:1:2", "5:320:4", "1:1:1.0001", "list=1", "detail=0",
    "list=nan", "list=1,detail=4", "1-3", "5-1", "1-99999999999", "x", "http://127.0.0.1:1",
    "http://", "amqp://guest:guest@127.0.0.1:1/", "5m", "30s", "2026-01-31T12:00:00Z",
    "{trace_id}", "{x}", "/nonexistent/dir/file", "open", "closed", "poisson", "exponential",
]  # fmt: skip
values = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=6),
)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and "--help" not in a.option_strings]


@st.composite
def command_lines(draw: st.DrawFn, parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for action in draw(st.lists(st.sampled_from(options(parser)), max_size=5)):
        argv.append(action.option_strings[-1])
        if action.nargs != 0:
            argv.append(draw(values))
    return argv


def parse_quietly(parse: Callable[[list[str]], object], argv: list[str]) -> tuple[int, str]:
    """0 if the command line was taken, else the exit status; and what went to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parse(argv)
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    return 0, err.getvalue()


@pytest.mark.parametrize("command", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_is_taken_or_refused_in_one_line(
    command: str, data: st.DataObject
) -> None:
    prog, parse, parser = PARSERS[command]
    argv = data.draw(command_lines(parser))
    code, err = parse_quietly(parse, argv)
    if code == 0:
        assert err == ""
        return
    assert code == 2, (argv, err)
    assert err.count("\n") == 1, (argv, err)
    assert err.startswith(f"{prog}: "), err
    assert "Traceback" not in err


REFUSED = [
    ("load", ["--rate", "-5"], "argument --rate: must be a number > 0 and <= 100000, not '-5'"),
    ("load", ["--rate", "0"], "argument --rate: must be a number > 0"),
    ("load", ["--duration", "0"], "argument --duration: must be a number > 0"),
    ("load", ["--duration", "-3"], "argument --duration: must be a number > 0"),
    ("load", ["--mode", "closed", "--concurrency", "0"], "argument --concurrency: must be a whole"),
    ("load", ["--sweep", "10:5"], "argument --sweep: must be START:STOP:FACTOR"),
    ("load", ["--sweep", "10:5:2"], "argument --sweep: a sweep needs 0 < START <= STOP"),
    ("load", ["--ids", "1-99999999999"], "argument --ids: more than 1,000,000 ids"),
    ("load", ["--rate", "100000", "--duration", "3600"], "plans more than 5,000,000 requests"),
    ("analyze", ["--input", "x"], "argument --input: must be an existing file, not 'x'"),
    ("analyze", ["--last", "5m", "--since", "1h", "--jaeger", "http://j", "--service", "s"],
     "argument --last: give --last, or --since/--until, not both"),
    ("analyze", ["--trace-url", "http://x/{id}"], "argument --trace-url: must be a URL with"),
    ("fault", ["--error-rate", "1.5"], "argument --error-rate: must be a number >= 0 and <= 1"),
    ("fault", ["--prefetch", "0"], "argument --prefetch: must be a whole number >= 1"),
    ("stack", ["--http-port", "70000"], "argument --http-port: must be a whole number >= 1"),
    ("sink", ["--port", "-1"], "argument --port: must be a whole number >= 1 and <= 65535"),
    ("compare", ["--rates", "10,-1"], "argument --rates: must be a number > 0"),
    ("scale", ["--seconds", "0"], "argument --seconds: must be a whole number >= 1"),
    ("bench", ["--only", "nothing"], "argument --only: names no variant"),
]  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("command", "argv", "message"), REFUSED)
def test_the_issues_examples_are_refused_in_one_line(
    command: str, argv: list[str], message: str
) -> None:
    """As a person runs them: the real command, a process of its own."""
    process = subprocess.run(
        [sys.executable, "-m", "loadtest", command, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert process.returncode == 2, process.stderr
    assert process.stdout == ""
    assert process.stderr.count("\n") == 1, process.stderr
    assert message in process.stderr


# --- the load generator on valid command lines -------------------------------------------------


@contextlib.contextmanager
def api_in_a_thread() -> Iterator[str]:
    """A real HTTP server with the API's two read routes over 30 dramas, in its own loop."""

    async def list_dramas(request: web.Request) -> web.Response:
        after = int(request.query.get("cursor", "0"))
        limit = int(request.query.get("limit", "20"))
        ids = list(range(after + 1, min(30, after + limit) + 1))
        cursor = str(ids[-1]) if ids and ids[-1] < 30 else None
        return web.json_response({"items": [{"id": i} for i in ids], "next_cursor": cursor})

    async def get_drama(request: web.Request) -> web.Response:
        return web.json_response({"id": int(request.match_info["id"])})

    loop = asyncio.new_event_loop()
    port = free_port()
    app = web.Application()
    app.router.add_get("/dramas", list_dramas)
    app.router.add_get("/dramas/{id}", get_drama)
    runner = web.AppRunner(app, shutdown_timeout=1)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with api_in_a_thread() as url:
        yield url


small_runs = st.fixed_dictionaries(
    {
        "--mode": st.sampled_from(["open", "closed"]),
        "--rate": st.floats(0.5, 300).map(lambda r: f"{r:.3f}"),
        "--duration": st.floats(0.05, 0.4).map(lambda d: f"{d:.3f}"),
        "--warmup": st.sampled_from(["0", "0.05"]),
        "--concurrency": st.integers(1, 8).map(str),
        "--arrivals": st.sampled_from(["poisson", "constant"]),
        "--mix": st.sampled_from(["list=1,detail=4", "detail=1", "list=1", "list=0,detail=2"]),
        "--seed": st.integers(0, 2**32).map(str),
    }
)


@pytest.mark.integration
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=small_runs)
def test_a_small_valid_run_exits_0_only_with_a_result(
    api: str, flags: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("load") / "result.json"
    argv = ["--url", api, "--json", str(out)] + [x for pair in flags.items() for x in pair]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = load.main(argv)
    if code == 0:
        result = json.loads(out.read_text())
        assert result["requests"] > 0
        assert result["ok"] == result["requests"]
    else:  # a Poisson schedule can be empty at a low rate over a short window
        assert code == 1
        assert flags["--mode"] == "open"
        assert "no request was sent in the measured window" in err.getvalue()
        assert not out.exists()


def span_lines(path: Path) -> None:
    """Six traces an hour old: runs a and b, three each, 10 to 60 ms long."""
    start = time.time_ns() - 3600 * 10**9
    lines = []
    for i in range(6):
        run = "a" if i < 3 else "b"
        span = {
            "traceId": f"{i + 1:032x}",
            "spanId": f"{i + 1:016x}",
            "name": "GET /dramas/{id}",
            "kind": 2,
            "startTimeUnixNano": str(start + i * 10**9),
            "endTimeUnixNano": str(start + i * 10**9 + (i + 1) * 10**7),
            "attributes": [{"key": "loadtest.run", "value": {"stringValue": run}}],
        }
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "drama"}}]}
        document = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
        lines.append(json.dumps(document))
    path.write_text("\n".join(lines) + "\n")


selections = st.fixed_dictionaries(
    {},
    optional={
        "--run": st.sampled_from(["a", "b", "zzz"]),
        "--baseline": st.sampled_from(["a", "b", "zzz"]),
        "--last": st.sampled_from(["30s", "2h", "1d"]),
        "--since": st.sampled_from(["2h", "30m", "2000-01-01T00:00:00Z", "yesterday"]),
        "--until": st.sampled_from(["1s", "59m", "2100-01-01T00:00:00+02:00"]),
        "--operation": st.sampled_from(["GET /dramas/{id}", "GET /dramas"]),
        "--min-traces": st.sampled_from(["1", "3", "4"]),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=selections)
def test_analyze_exits_0_only_with_traces(
    flags: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    spans = tmp_path_factory.mktemp("spans") / "spans.jsonl"
    span_lines(spans)
    argv = ["--input", str(spans), "--json", *(x for pair in flags.items() for x in pair)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = analyze.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    if code == 0:
        document = json.loads(out.getvalue())
        assert document["traces"] >= int(flags.get("--min-traces", "1"))
        assert {t["trace_id"] for t in document["slowest"]}
        if "--baseline" in flags:
            assert document["baseline"]["baseline_traces"] >= 1
    else:
        assert code in (1, 2), err.getvalue()
        assert out.getvalue() == ""
        assert err.getvalue().count("\n") == 1, err.getvalue()


# --- help ---------------------------------------------------------------------------------------

COMMANDS = ["analyze", "bench", "compare", "fault", "load", "scale", "sink", "stack"]


@pytest.mark.integration
@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text_with_defaults_and_every_option_explained(command: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "loadtest", command, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    text = process.stdout
    assert "``" not in text
    assert not re.search(r":(class|func|meth|mod):", text)
    assert not re.search(r"\bissue\b", text, re.IGNORECASE)
    assert "(default: None)" not in text
    parser = PARSERS[command][2]
    for action in options(parser):
        assert action.help, f"{command} {action.option_strings[-1]} has no help"
    assert "(default: " in text


README_ROW = re.compile(r"^\| (`[A-Z0-9_*]+`(?:, `[A-Z0-9_*]+`)*) \| ([^|]+) \| ([^|]+) \|", re.M)


def readme_variables() -> dict[str, tuple[set[str], str]]:
    """README's configuration table: variable -> (services, default cell)."""
    table: dict[str, tuple[set[str], str]] = {}
    for names, services, default in README_ROW.findall((ROOT / "README.md").read_text()):
        for name in re.findall(r"`([A-Z0-9_*]+)`", names):
            table[name] = ({s.strip() for s in services.split(",")}, default.strip())
    return table


def help_variables(service: str) -> dict[str, str]:
    process = subprocess.run(
        [sys.executable, "-m", service, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    )
    listing = process.stdout.split("environment variables")[1].splitlines()[1:]
    found = {}
    for line in listing:
        name, _, rest = line.strip().partition(" ")
        found[name] = rest.strip().split(";")[0]
    return found


@pytest.mark.integration
@pytest.mark.parametrize("service", ["drama", "episode", "stream"])
def test_service_help_lists_the_readme_environment_table(service: str) -> None:
    """Generated from the settings code, compared with the README: neither can drift."""
    listed = help_variables(service)
    table = readme_variables()
    for name, default in listed.items():
        assert name in table, f"README's table lacks {name} ({service} reads it)"
        services, cell = table[name]
        assert services & {service, "all"}, f"README: {name} is not marked for {service}"
        if name == "OTEL_*":
            continue
        if default == "unset":
            assert cell.startswith("unset"), (name, cell)
        else:
            assert f"`{default}`" in cell.replace("<service>", service), (name, default, cell)
    documented = {
        name
        for name, (services, _) in table.items()
        if services & {service, "all"} and name != "AWS_*"
    }
    assert documented - set(listed) == set(), f"README lists what {service} does not read"
