"""The load generator against a real aiohttp server in the test's own event loop.

The server (:class:`FakeApi`) speaks the two routes of the API over a small catalogue and
records when each request arrived, with its path and baggage; a gate lets it stall every
request, a semaphore gives it a fixed capacity. Arrival times and the generator's schedule are
read on the same monotonic clock, so "sent at its intended time" is checked directly.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from loadtest.devstack.stack import Stack
from loadtest.load.command import parser, table
from loadtest.load.command import run as run_load
from loadtest.load.schedule import Catalogue, parse_mix, plan, poisson_arrivals, requests
from tests.conftest import StackConfigFactory, free_port
from tests.infra.conftest import TOOLS, run
from tests.otlp import OtlpReceiver, Span

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "test-run-1"
DRAMAS = 30  # discovery pages them 20 at a time: 2 requests before the run
DISCOVERY_REQUESTS = 2


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 -- repeatable schedules, not secrets


@dataclass
class Arrival:
    at: float  # loop time
    path: str  # with the query
    baggage: str


@dataclass
class FakeApi:
    """``GET /dramas`` and ``GET /dramas/{id}``; ``stall`` holds requests until it is over."""

    stall: float = 0.0  # detail requests wait this long after the first one arrives
    service: float = 0.0  # seconds each request takes once it is let through
    capacity: int = 10_000  # requests served at once; the rest queue in the server
    arrivals: list[Arrival] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    stalled_for: float = 0.0

    def __post_init__(self) -> None:
        self._serving = asyncio.Semaphore(self.capacity)
        if not self.stall:
            self.gate.set()

    def details(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.path.startswith("/dramas/")]

    def lists(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.path.startswith("/dramas?")]

    async def _arrive(self, request: web.Request) -> None:
        loop = asyncio.get_running_loop()
        self.arrivals.append(Arrival(loop.time(), request.path_qs, request.headers["baggage"]))
        if request.path.startswith("/dramas/"):  # details stall; discovery must get through
            if len(self.details()) == 1 and self.stall:
                # The stall is the scenario under test: it starts with the first request.
                loop.call_later(self.stall, self.gate.set)
                self.stalled_for = self.stall
            await self.gate.wait()
        async with self._serving:
            await asyncio.sleep(self.service)  # the server's work, not synchronisation

    async def list_dramas(self, request: web.Request) -> web.Response:
        await self._arrive(request)
        limit = int(request.query.get("limit", "20"))
        after = int(request.query.get("cursor", "0"))
        ids = list(range(after + 1, min(DRAMAS, after + limit) + 1))
        more = ids and ids[-1] < DRAMAS
        items = [{"id": i, "title": f"drama {i}"} for i in ids]
        return web.json_response({"items": items, "next_cursor": str(ids[-1]) if more else None})

    async def get_drama(self, request: web.Request) -> web.Response:
        await self._arrive(request)
        return web.json_response({"id": int(request.match_info["id"])})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []
    apis: list[FakeApi] = []

    async def start(api: FakeApi) -> str:
        app = web.Application()
        app.router.add_get("/dramas", api.list_dramas)
        app.router.add_get("/dramas/{id}", api.get_drama)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        apis.append(api)
        return f"http://127.0.0.1:{port}"

    yield start
    for api in apis:
        api.gate.set()  # let held requests finish so the server stops at once
    for runner in runners:
        await runner.cleanup()


def load_args(url: str, *extra: str) -> Any:
    return parser().parse_args(["--url", url, "--run-id", RUN_ID, "--warmup", "0", *extra])


async def test_open_loop_keeps_its_schedule_when_the_server_stalls(serve: Any) -> None:
    rate, duration = 100, 2.0
    opened = FakeApi(stall=1.5, service=0.02)
    url = await serve(opened)
    args = ("--rate", str(rate), "--duration", str(duration), "--arrivals", "constant")
    # The generator and the server share this process: a full collection of the garbage the
    # rest of the suite left (0.5 s seen once in the unit tier) would be late for both.
    gc.collect()
    gc.disable()
    try:
        result = await run_load(load_args(url, *args, "--mix", "detail=1"))
    finally:
        gc.enable()

    # Every request of the schedule reached the server, each at its intended time, the stall
    # notwithstanding: offsets from the first one follow i / rate.
    arrivals = [a.at for a in opened.details()]
    assert len(arrivals) == rate * duration
    lateness = [at - arrivals[0] - i / rate for i, at in enumerate(arrivals)]
    assert max(abs(x) for x in lateness) < 0.25, max(lateness, key=abs)
    assert statistics.median(abs(x) for x in lateness) < 0.02
    release = arrivals[0] + opened.stalled_for
    assert sum(at < release for at in arrivals) >= 0.9 * rate * opened.stalled_for
    assert result["intended_requests"] == result["sent"] == result["ok"] == rate * duration
    assert result["timeouts"] == result["not_started"] == 0
    # The stall shows as latency: the first requests waited all of it.
    assert result["latency_ms"]["max"] >= opened.stalled_for * 1e3
    assert result["latency_ms"]["p99"] >= 0.95 * opened.stalled_for * 1e3
    assert result["latency_ms"]["p50"] >= 300

    # A closed loop against the same stall sends far fewer requests and reports a median
    # that knows nothing of it: coordinated omission.
    closed = FakeApi(stall=1.5, service=0.02)
    url = await serve(closed)
    mode = ("--mode", "closed", "--concurrency", "2", "--duration", str(duration))
    closed_result = await run_load(load_args(url, *mode, "--mix", "detail=1"))
    assert len(closed.details()) == closed_result["requests"] < rate * duration / 2
    assert closed_result["latency_ms"]["p50"] * 5 < result["latency_ms"]["p50"]


async def test_waiting_for_a_connection_counts_as_latency(serve: Any) -> None:
    api = FakeApi(stall=1.0)
    url = await serve(api)
    flags = ("--rate", "40", "--duration", "1", "--arrivals", "constant", "--mix", "detail=1")
    result = await run_load(load_args(url, *flags, "--max-in-flight", "2"))

    # Two requests held the two connections through the stall; the other 38 waited here, and
    # went out after it, late, yet none was lost and each one's wait is in its latency.
    release = api.details()[0].at + api.stalled_for
    assert sum(a.at < release for a in api.details()) == 2
    assert result["intended_requests"] == result["sent"] == result["ok"] == 40
    assert result["send_lag_ms"]["p90"] >= 500
    assert result["latency_ms"]["p50"] >= 400


async def test_requests_that_time_out_are_counted_at_their_timeout(serve: Any) -> None:
    api = FakeApi(stall=30.0)  # never answers within the run
    url = await serve(api)
    flags = ("--rate", "40", "--duration", "1", "--arrivals", "constant", "--mix", "detail=1")
    result = await run_load(load_args(url, *flags, "--max-in-flight", "2", "--timeout", "0.5"))

    assert result["intended_requests"] == result["requests"] == 40
    assert result["timeouts"] + result["not_started"] == 40
    assert result["ok"] == 0
    assert len(api.details()) == result["sent"]
    assert result["latency_ms"]["p50"] >= 500
    assert "timeout" in table(result)


def test_poisson_arrivals_have_the_mean_rate_and_are_repeatable() -> None:
    rate, duration = 200.0, 50.0
    times = list(poisson_arrivals(rate, duration, seeded(7)))
    expected = rate * duration
    assert abs(len(times) - expected) < 3 * expected**0.5  # within 3 sigma
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.mean(gaps) == pytest.approx(1 / rate, rel=0.03)
    # Exponential gaps: standard deviation equal to the mean (a constant schedule has 0).
    assert statistics.stdev(gaps) == pytest.approx(1 / rate, rel=0.05)
    assert all(0 <= t < duration for t in times)
    assert list(poisson_arrivals(rate, duration, seeded(7))) == times


def test_the_plan_draws_scenarios_by_weight() -> None:
    catalogue = Catalogue(ids=[1, 2, 3], cursors=["c1"])
    source = requests(parse_mix("list=1,detail=4"), catalogue, seeded(1))
    shots = plan(iter(range(5000)), source)
    share = sum(s.scenario == "list" for s in shots) / len(shots)
    assert share == pytest.approx(0.2, abs=0.02)
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        parse_mix("list=1,search=2")


async def test_the_mix_is_honoured_over_the_catalogue(serve: Any) -> None:
    api = FakeApi()
    url = await serve(api)
    flags = ("--rate", "200", "--duration", "1", "--arrivals", "poisson", "--seed", "3")
    result = await run_load(load_args(url, *flags, "--mix", "list=1,detail=4"))

    scenarios = result["scenarios"]
    lists, details = api.lists()[DISCOVERY_REQUESTS:], api.details()
    assert scenarios["list"]["requests"] == len(lists)
    assert scenarios["detail"]["requests"] == len(details)
    assert (
        scenarios["list"]["ok"] + scenarios["detail"]["ok"] == result["ok"] == len(api.arrivals) - 2
    )
    assert 0.1 < len(lists) / (len(lists) + len(details)) < 0.3
    # Details ask for the ids discovery found; lists start at the cursors it saw, or at the top.
    assert {int(a.path.rsplit("/", 1)[1]) for a in details} <= set(range(1, DRAMAS + 1))
    cursors = {parse_qs(urlsplit(a.path).query).get("cursor", [None])[0] for a in lists}
    assert cursors == {None, "20"}
    for scenario in ("list", "detail", "total"):
        stats = result if scenario == "total" else scenarios[scenario]
        assert set(stats["latency_ms"]) == {"p50", "p90", "p99", "p99_9", "max", "mean"}

    only = FakeApi()
    url = await serve(only)
    await run_load(
        load_args(url, "--rate", "50", "--duration", "0.5", "--mix", "detail=1", "--ids", "5-7")
    )
    assert {a.path for a in only.details()} == {"/dramas/5", "/dramas/6", "/dramas/7"}


async def test_every_request_carries_the_synthetic_baggage(serve: Any) -> None:
    api = FakeApi()
    url = await serve(api)
    await run_load(load_args(url, "--rate", "50", "--duration", "0.4"))
    assert api.arrivals
    assert {a.baggage for a in api.arrivals} == {f"synthetic=true,loadtest.run={RUN_ID}"}


RESULT_SCHEMA: dict[str, Any] = {
    "$defs": {
        "latency": {
            "type": "object",
            "required": ["p50", "p90", "p99", "p99_9", "max", "mean"],
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        "stats": {
            "type": "object",
            "required": [
                "requests",
                "ok",
                "errors_by_status",
                "timeouts",
                "not_started",
                "connection_errors",
                "latency_ms",
            ],
            "properties": {
                "requests": {"type": "integer"},
                "errors_by_status": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                    "propertyNames": {"pattern": "^[0-9]{3}$"},
                },
                "latency_ms": {"$ref": "#/$defs/latency"},
            },
        },
    },
    "allOf": [{"$ref": "#/$defs/stats"}],
    "type": "object",
    "required": [
        "run_id",
        "target",
        "mode",
        "arrivals",
        "rate",
        "duration_s",
        "warmup_s",
        "sent",
        "intended_requests",
        "send_lag_ms",
        "scenarios",
    ],
    "properties": {
        "mode": {"const": "open"},
        "rate": {
            "type": "object",
            "required": ["intended", "sent", "ok"],
            "additionalProperties": {"type": "number"},
        },
        "send_lag_ms": {"$ref": "#/$defs/latency"},
        "scenarios": {"type": "object", "additionalProperties": {"$ref": "#/$defs/stats"}},
    },
}


@pytest.mark.integration
async def test_the_command_writes_json_to_stdout_and_the_table_to_stderr(serve: Any) -> None:
    api = FakeApi()
    url = await serve(api)
    command = [sys.executable, "-m", "loadtest", "load", "--url", url, "--rate", "40"]
    command += ["--duration", "0.5", "--warmup", "0.25", "--arrivals", "constant", "--json", "-"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    jsonschema.validate(result, RESULT_SCHEMA)
    assert result["intended_requests"] == result["requests"] == result["ok"] == 20
    assert result["rate"]["intended"] == 40
    # Warmup requests are sent but not measured: the server saw both.
    assert len(api.arrivals) == DISCOVERY_REQUESTS + 30
    table = err.decode()
    assert "open loop, constant arrivals at 40/s" in table
    assert "\r" not in table  # no progress bar when stderr is not a terminal


async def test_a_sweep_stops_where_p99_crosses_the_limit(serve: Any) -> None:
    # One request at a time, 20 ms each: 50 requests a second at most. Beyond that the queue
    # grows for the whole step and p99 with it (at 80/s the last request waits about 0.9 s).
    api = FakeApi(service=0.02, capacity=1)
    url = await serve(api)
    flags = ("--sweep", "5:320:4", "--p99-ms", "250", "--duration", "1.5")
    result = await run_load(load_args(url, *flags, "--arrivals", "constant", "--mix", "detail=1"))

    assert [s["rate"]["intended"] for s in result["steps"]] == [5, 20, 80]  # no 320
    assert result["max_rate_under_limit"] == 20
    assert result["crossed"]["rate"] == 80
    assert result["crossed"]["reason"] == "p99"
    assert result["steps"][-1]["latency_ms"]["p99"] > 250 >= result["steps"][1]["latency_ms"]["p99"]


@pytest.mark.integration
@pytest.mark.timing
@pytest.mark.solo  # a rate over 2 s: beside the timing tier, locust sent 38 of ~200 (CI)
async def test_the_locustfile_sends_the_same_mix_with_baggage(serve: Any) -> None:
    api = FakeApi()
    url = await serve(api)
    command = [sys.executable, "-m", "locust"]
    command += ["-f", str(ROOT / "loadtest" / "load" / "locustfile.py")]
    command += ["--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "2s"]
    command += ["--host", url, "--only-summary", "--loglevel", "WARNING"]
    environment = {**os.environ, "LOADTEST_RUN_ID": RUN_ID, "LOADTEST_USER_RATE": "25"}
    process = await asyncio.create_subprocess_exec(
        *command, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, (out + err).decode()

    lists, details = api.lists()[DISCOVERY_REQUESTS:], api.details()
    assert len(details) > 50
    assert 0.05 < len(lists) / (len(lists) + len(details)) < 0.4
    assert {a.baggage for a in api.arrivals} == {f"synthetic=true,loadtest.run={RUN_ID}"}


# checkov findings accepted in k8s/locust, each with its reason (annotations on the objects).
LOCUST_CHECKOV_SKIPS = {
    ("CKV_K8S_43", "Deployment.drama-streaming.locust-master"),  # tag-pinned, digest unknown
    ("CKV_K8S_43", "Deployment.drama-streaming.locust-worker"),
    ("CKV_K8S_8", "Deployment.drama-streaming.locust-worker"),  # no port; exits without master
}


@pytest.mark.integration
def test_the_locust_manifests_render_validate_and_pass_checkov(tmp_path: Path) -> None:
    locustfile = (ROOT / "loadtest" / "load" / "locustfile.py").read_text()
    assert (ROOT / "k8s" / "locust" / "locustfile.py").read_text() == locustfile, (
        "k8s/locust/locustfile.py differs from loadtest/load/locustfile.py: "
        "cp loadtest/load/locustfile.py k8s/locust/"
    )
    rendered = run("kubectl", "kustomize", ROOT / "k8s" / "locust").stdout
    (tmp_path / "locust.yaml").write_text(rendered)
    run(
        Path(sys.executable).parent / "kubernetes-validate",
        "--strict",
        "-k",
        "1.32.0",
        tmp_path / "locust.yaml",
    )

    checkov = TOOLS / "checkov" / "bin" / "checkov"
    assert checkov.exists(), "checkov is missing: run `make tools`"
    proc = subprocess.run(
        [
            checkov,
            "-d",
            tmp_path,
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    results = json.loads(proc.stdout)["results"]
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert not failed, "\n".join(failed)
    skipped = {(c["check_id"], c["resource"]) for c in results["skipped_checks"]}
    assert skipped == LOCUST_CHECKOV_SKIPS

    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"drama-streaming"}
    configmaps = [d for (kind, _), d in docs.items() if kind == "ConfigMap"]
    assert any(d["data"].get("locustfile.py") == locustfile for d in configmaps)
    for role in ("master", "worker"):
        pod = docs["Deployment", f"locust-{role}"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] >= 10000
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/mnt/locust/locustfile.py" in container["args"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 -- the path checked, not used
    worker = docs["Deployment", "locust-worker"]["spec"]["template"]["spec"]["containers"][0]
    master_host = worker["args"][worker["args"].index("--master-host") + 1]
    assert ("Service", master_host) in docs


@pytest.mark.timeout(120)
async def test_load_on_the_real_services_is_marked_synthetic_in_their_traces(
    stack_config: StackConfigFactory, receiver: tuple[OtlpReceiver, str]
) -> None:
    otlp, endpoint = receiver
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    async with Stack(stack_config(env=env)) as stack:
        flags = ("--rate", "20", "--duration", "1", "--timeout", "5")
        result = await run_load(load_args(stack.config.base_url, *flags))
        async with (
            aiohttp.ClientSession() as http,  # a user: no baggage
            http.get(f"{stack.config.base_url}/dramas/1") as response,
        ):
            assert response.status == 200

        # The generator found the catalogue and its cursors, and the API took every request.
        assert result["requests"] == result["ok"] > 0
        assert set(result["scenarios"]) == {"list", "detail"}

        def servers(spans: list[Span]) -> list[Span]:
            return [s for s in spans if s.service == "drama-service" and s.kind == "SERVER"]

        # The measured requests, the user's, and at least one page of discovery.
        expected = result["requests"] + 1 + 1
        await otlp.wait_for(lambda spans: len(servers(spans)) >= expected)
    spans = servers(otlp.spans)
    users = [s for s in spans if "synthetic" not in s.attributes]
    assert len(users) == 1
    assert users[0].name == "GET /dramas/{id}"
    assert {s.attributes.get("synthetic") for s in spans if s not in users} == {True}
