"""Offline checks of the image (Dockerfile, .dockerignore) and of compose.yaml.

No Docker engine runs here: the Dockerfile is linted (hadolint, checkov) and its facts asserted;
compose.yaml is resolved by the real compose binary and validated against the compose spec,
then its structure is asserted on the resolved model (what `docker compose up` would run).
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from .compose_files import COMPOSE_FILE, ENV_DIR, compose_binary, compose_config, env_file
from .conftest import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
# python:<3.11.patch>-slim-<debian release>, optionally @sha256:<digest>
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
# An exact image version (no floating `latest`, `4`, `4.1`...), optionally with a digest;
# PostgreSQL (10+) numbers its releases major.minor, so 17.6 is exact.
EXACT_TAG = re.compile(
    r"(:(v?\d+\.\d+\.\d+[\w.-]*|RELEASE\.[\dT-]+Z)|^postgres:\d+\.\d+(-\w+)?)"
    r"(@sha256:[0-9a-f]{64})?$"
)
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev", "libpq-dev")
ONE_SHOT_CONDITION = "service_completed_successfully"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|AMQP_URL|DATABASE_URL", re.IGNORECASE)


def tool(name: str) -> Path:
    """A checker from the project venv (pyproject's dev extra); missing fails, never skips."""
    path = VENV_BIN / name
    assert path.exists(), f"{name} is missing from {VENV_BIN}: pip install -e '.[dev]'"
    return path


# ---------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def stages() -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        else:
            assert result, f"{instruction} before the first FROM"
            result[-1].instructions.append((instruction, args.strip()))
    return result


@pytest.mark.integration
def test_hadolint_finds_nothing() -> None:
    # Default threshold: any finding (error, warning, info, style) fails.
    run(tool("hadolint"), DOCKERFILE)


def test_checkov_passes_the_dockerfile(checkov: Path) -> None:
    # The one skip, CKV_DOCKER_2 (no HEALTHCHECK), carries its reason inline in the Dockerfile.
    run(checkov, "-f", DOCKERFILE, "--framework", "dockerfile", "--skip-download", "--compact")


def test_image_is_multi_stage_on_a_pinned_slim_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "a builder stage and a runtime stage"
    for stage in all_stages:
        assert PINNED_BASE.match(stage.base), f"base not pinned to an exact slim tag: {stage.base}"
    final = all_stages[-1]
    copies = final.args("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], f"final stage copies {copies}"
    # The default target is last; before it, only the builder and the seed target.
    assert all_stages[0].name == "builder"
    assert [s.name for s in all_stages[1:-1]] in ([], ["seed"])


def test_seed_target_is_the_app_plus_ffmpeg_and_runs_unprivileged() -> None:
    """`--target seed`: the same venv and user as the services' image, plus Debian's ffmpeg
    (and a font for drawtext) so that `stream seed` uploads playable media; no other stage
    installs a system package."""
    by_name = {s.name: s for s in stages()}
    seed, final = by_name["seed"], stages()[-1]
    assert seed.base == final.base
    assert seed.args("COPY") == final.args("COPY")
    assert seed.args("USER") == final.args("USER") == ["10001:10001"]
    assert seed.args("ENTRYPOINT") == final.args("ENTRYPOINT")
    assert seed.args("CMD") == ['["stream", "seed"]']
    (install,) = [r for r in seed.args("RUN") if "apt-get install" in r]
    packages = set(install.split("apt-get install", 1)[1].split("&&", 1)[0].split())
    assert {"ffmpeg", "fonts-dejavu-core", "--no-install-recommends"} <= packages
    assert "rm -rf /var/lib/apt/lists/*" in install
    assert "useradd --system --uid 10001" in " ".join(seed.args("RUN"))
    for stage in stages():
        if stage.name != "seed":
            assert "apt-get" not in " ".join(stage.args("RUN")), stage.name


@pytest.mark.integration
def test_only_the_stream_seed_runs_the_seed_target() -> None:
    """compose builds the seed target for stream-seed alone; every other program of ours runs
    the default target, which has no ffmpeg."""
    for name, service in services("load").items():
        build = service.get("build")
        if not build:
            continue
        if name == "stream-seed":
            assert build.get("target") == "seed", name
            assert service["image"] == "drama-streaming-seed:local"
            assert service["command"] in (None, ["stream", "seed"]), service["command"]
        elif Path(build["context"]).resolve() == ROOT:
            assert "target" not in build, name
            assert service["image"] == "drama-streaming:local", name


def test_final_stage_has_no_build_tools_and_runs_unprivileged() -> None:
    final = stages()[-1]
    runs = " ".join(final.args("RUN"))
    assert "apt-get install" not in runs, runs
    assert "pip install" not in runs, runs
    words = set(re.split(r"[\s;&|]+", runs))
    assert not words & set(BUILD_TOOLS), (
        f"build tools in the final stage: {words & set(BUILD_TOOLS)}"
    )
    users = final.args("USER")
    assert users, "the final stage sets no USER: the services would run as root"
    uid, _, gid = users[-1].partition(":")
    for part, value in (("UID", uid), ("GID", gid)):
        assert value.isdigit(), f"USER {users[-1]}: want a numeric {part}"
        assert int(value) >= 10000, f"USER {users[-1]}: want a {part} >= 10000"


def test_image_runs_a_module_chosen_by_command() -> None:
    final = stages()[-1]
    env = " ".join(final.args("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env, env
    assert "PYTHONUNBUFFERED=1" in env, env
    assert final.args("ENTRYPOINT") == ['["python", "-m"]']
    assert final.args("CMD") == ['["drama"]']


def test_build_context_holds_only_the_package() -> None:
    """.dockerignore allows in exactly what `pip install .` reads, so nothing else (.git,
    .venv, tests, state, env files) reaches the build; a new package must be added to both."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list starts by excluding everything"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert allowed == packages | {"pyproject.toml", project["project"]["readme"]}


# ---------------------------------------------------------------------------- compose


def services(*profiles: str) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose_config(*profiles)["services"]
    return result


def is_one_shot(service: dict[str, Any]) -> bool:
    """Declared to run once (`restart: "no"`); everything else is long-running."""
    return service.get("restart") == "no"


@pytest.mark.integration
def test_compose_config_is_valid() -> None:
    run(compose_binary(), "-f", COMPOSE_FILE, "--profile", "load", "config", "-q")


@pytest.mark.integration
def test_compose_file_matches_the_compose_spec_schema() -> None:
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE)


@pytest.mark.integration
def test_yamllint_passes() -> None:
    # .yamllint.yaml at the root (document-start and line-length relaxed) applies.
    run(tool("yamllint"), "--strict", COMPOSE_FILE, ROOT / "deploy", ROOT / ".yamllint.yaml")


@pytest.mark.integration
def test_every_service_is_probed_or_runs_once() -> None:
    for name, service in services("load").items():
        if is_one_shot(service):
            assert "healthcheck" not in service, f"{name} runs once: nothing to wait for"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no health check"
        assert test[0] in {"CMD", "CMD-SHELL"}, f"{name}: health check {test}"
        assert service.get("restart") == "unless-stopped", (
            f"{name}: restart {service.get('restart')}"
        )


@pytest.mark.integration
def test_dependencies_wait_for_health_or_completion() -> None:
    all_services = services("load")
    for name, service in all_services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            target = all_services[dependency]
            want = ONE_SHOT_CONDITION if is_one_shot(target) else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dependency}: {spec['condition']}"


@pytest.mark.integration
def test_services_start_after_their_seeds_and_workers() -> None:
    deps = {name: set(s.get("depends_on", {})) for name, s in services().items()}
    assert {"rabbitmq", "episode-seed"} <= deps["episode-service"]
    assert {"rabbitmq", "stream-seed"} <= deps["stream-service"]
    assert {"drama-seed", "episode-service", "stream-service"} <= deps["drama-service"]
    assert "minio-init" in deps["stream-seed"]
    assert {"postgres"} <= deps["drama-seed"] & deps["episode-seed"]


@pytest.mark.integration
def test_our_services_probe_their_contract_ports() -> None:
    """Each service's health check asks its own /readyz on the port its settings listen on."""
    ports = {"drama-service": "HTTP_PORT", "episode-service": "METRICS_PORT"}
    ports["stream-service"] = "METRICS_PORT"
    expected = {"drama-service": "8080", "episode-service": "9101", "stream-service": "9102"}
    for name, variable in ports.items():
        service = services()[name]
        port = service["environment"][variable]
        assert port == expected[name], f"{name} {variable}={port}"
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, f"{name} probes {probe}"


@pytest.mark.integration
def test_nothing_runs_as_root_where_the_image_allows() -> None:
    for name, service in services("load").items():
        if "build" in service:
            continue  # our image: its USER is asserted above
        user = str(service.get("user", ""))
        assert user, f"{name} sets no user: its image's default may be root"
        assert user.split(":", maxsplit=1)[0] not in {"0", "root"}, f"{name} runs as root"


@pytest.mark.integration
def test_our_containers_are_locked_down() -> None:
    for name, service in services("load").items():
        if "build" in service:
            assert service.get("read_only") is True, name
            assert service.get("cap_drop") == ["ALL"], name
            assert "no-new-privileges:true" in service.get("security_opt", []), name


@pytest.mark.integration
def test_third_party_images_are_pinned() -> None:
    for name, service in services("load").items():
        if "build" not in service:
            assert EXACT_TAG.search(service["image"]), f"{name}: {service['image']} not exact"


@pytest.mark.integration
def test_load_generator_is_an_opt_in_profile() -> None:
    assert "loadtest" not in services(), "the load generator must not start by default"
    load = services("load")["loadtest"]
    assert load["profiles"] == ["load"]
    command = load["command"]
    assert command[:2] == ["loadtest", "load"]
    assert command[command.index("--url") + 1] == "http://drama-service:8080"
    assert load["depends_on"]["drama-service"]["condition"] == "service_healthy"


@pytest.mark.integration
def test_ports_are_published_on_loopback_only() -> None:
    for name, service in services("load").items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} on all interfaces"


@pytest.mark.integration
def test_mounted_files_exist() -> None:
    """A bind mount of a missing path would start with an empty directory in its place."""
    for name, service in services("load").items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name} mounts missing {volume['source']}"


# ---------------------------------------------------------------------------- credentials


def test_compose_file_holds_no_secret() -> None:
    """Credentials come from the dev-only env files, never from compose.yaml itself."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key in environment:
            if key in {"AWS_DEFAULT_REGION"}:
                continue
            assert not SECRET_KEY.search(key), f"{name} sets {key} in compose.yaml"
    text = COMPOSE_FILE.read_text()
    for path in ENV_DIR.glob("*.env"):
        for key, value in env_file(path.name).items():
            secret = urllib.parse.urlsplit(value).password if "://" in value else value
            if SECRET_KEY.search(key) and secret:
                assert secret not in text, f"{path.name} {key}'s secret appears in compose.yaml"


def test_env_files_say_they_are_dev_only() -> None:
    files = sorted(ENV_DIR.glob("*.env"))
    assert files
    for path in files:
        assert "DEV-ONLY" in path.read_text().splitlines()[0], f"{path.name} is not marked"


@pytest.mark.integration
def test_each_service_sees_only_its_own_credentials() -> None:
    everything = services("load")
    drama, episode, stream = (
        everything[n]["environment"] for n in ("drama-service", "episode-service", "stream-service")
    )
    assert "AWS_SECRET_ACCESS_KEY" not in drama
    assert "AWS_SECRET_ACCESS_KEY" not in episode
    assert "DATABASE_URL" not in stream
    assert drama["DATABASE_URL"] != episode["DATABASE_URL"]
    assert (
        stream["AWS_ACCESS_KEY_ID"] != everything["stream-seed"]["environment"]["AWS_ACCESS_KEY_ID"]
    )
    assert "environment" not in everything["loadtest"] or not any(
        SECRET_KEY.search(k) for k in everything["loadtest"]["environment"]
    )
    for name, service in everything.items():
        if "build" in service:
            assert "MINIO_ROOT_PASSWORD" not in service.get("environment", {}), name
            assert "POSTGRES_PASSWORD" not in service.get("environment", {}), name


def test_credentials_agree_across_env_files() -> None:
    """The passwords written twice (the creator's file, the user's URL) are the same."""
    postgres = env_file("postgres.env")
    for service, variable in (("drama", "DRAMA_DB_PASSWORD"), ("episode", "EPISODE_DB_PASSWORD")):
        url = urllib.parse.urlsplit(env_file(f"{service}-service.env")["DATABASE_URL"])
        assert url.username == service
        assert url.path == f"/{service}"
        assert url.password == postgres[variable], f"{service}'s DATABASE_URL vs {variable}"
    users = env_file("minio-users.env")
    stream, seed = env_file("stream-service.env"), env_file("media-seed.env")
    assert (stream["AWS_ACCESS_KEY_ID"], stream["AWS_SECRET_ACCESS_KEY"]) == (
        "stream-service",
        users["STREAM_SERVICE_SECRET"],
    )
    assert (seed["AWS_ACCESS_KEY_ID"], seed["AWS_SECRET_ACCESS_KEY"]) == (
        "media-seed",
        users["MEDIA_SEED_SECRET"],
    )
    script = (ROOT / "deploy" / "minio" / "init.sh").read_text()
    assert 'grant stream-service "$STREAM_SERVICE_SECRET" media-read' in script
    assert 'grant media-seed "$MEDIA_SEED_SECRET" media-seed' in script


# ---------------------------------------------------------------------------- observability


@pytest.mark.integration
def test_prometheus_targets_are_compose_services() -> None:
    """targets.compose.yml names hosts and ports that compose really runs."""
    all_services = services()
    groups = yaml.safe_load((ROOT / "observability/prometheus/targets.compose.yml").read_text())
    for group in groups:
        for target in group["targets"]:
            host, _, port = target.partition(":")
            assert host in all_services, f"Prometheus scrapes {host}, which compose does not run"
            service = all_services[host]
            listening = {
                "8080": service.get("environment", {}).get("HTTP_PORT"),
                "9101": service.get("environment", {}).get("METRICS_PORT"),
                "9102": service.get("environment", {}).get("METRICS_PORT"),
            }.get(port)
            if "build" in service:
                assert listening == port, f"{host} does not listen on {port}"
    prometheus = all_services["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    targets = [v for v in prometheus["volumes"] if v["target"] == "/etc/prometheus/targets.yml"]
    assert targets, "targets.compose.yml is not mounted over targets.yml"
    assert targets[0]["source"].endswith("observability/prometheus/targets.compose.yml")


@pytest.mark.integration
def test_grafana_datasources_resolve_in_compose() -> None:
    grafana = services()["grafana"]["environment"]
    datasources = (
        ROOT / "observability/grafana/provisioning/datasources/datasources.yml"
    ).read_text()
    for variable, service, port in (
        ("PROMETHEUS_URL", "prometheus", 9090),
        ("JAEGER_URL", "jaeger", 16686),
    ):
        assert f"${{{variable}}}" in datasources
        url = urllib.parse.urlsplit(grafana[variable])
        assert (url.hostname, url.port) == (service, port), f"{variable}={grafana[variable]}"


@pytest.mark.integration
def test_services_send_traces_to_jaeger_over_otlp_http() -> None:
    for name in ("drama-service", "episode-service", "stream-service"):
        env = services()[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert env["OTEL_SERVICE_NAME"] == name


@pytest.mark.integration
@pytest.mark.parametrize("script", ["deploy/postgres/init-databases.sh", "deploy/minio/init.sh"])
def test_init_scripts_are_valid_sh(script: str) -> None:
    run("sh", "-n", ROOT / script)
    assert shlex.split((ROOT / script).read_text().splitlines()[0]) == ["#!/bin/sh"]
