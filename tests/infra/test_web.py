"""Offline checks of the player's deployment: its image, and one set of routes everywhere.

The page calls the API and the trace store on its own origin, so whatever serves it must route
the same paths to the same places: the local front (loadtest/devstack/front.py), nginx in compose
(deploy/web/routes.conf) and the gateway in a cluster (k8s/mesh/web.yaml with drama-service's
route). These tests hold the three to one list.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from loadtest.devstack import front

from .compose_files import compose_config
from .conftest import ROOT, run
from .test_container import tool

WEB = ROOT / "web"
DOCKERFILE = WEB / "Dockerfile"
# Paths the page requests, and who must answer each.
ROUTES = {
    "/dramas?limit=8": "api",
    "/dramas/1": "api",
    "/dramas/1/episodes/1/playlist.m3u8": "api",
    "/api/v3/traces/4bf92f3577b34da6a3ce929d0e0e4736": "jaeger",
    "/api/analysis/traces/4bf92f3577b34da6a3ce929d0e0e4736": "analysis",
    "/": "player",
    "/assets/index-abc123.js": "player",
}


@pytest.mark.integration
def test_hadolint_finds_nothing_in_the_web_image() -> None:
    run(tool("hadolint"), DOCKERFILE)


def test_checkov_passes_the_web_image(checkov: Path) -> None:
    run(checkov, "-f", DOCKERFILE, "--framework", "dockerfile", "--skip-download", "--compact")


def test_web_image_builds_apart_and_serves_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2, "a build stage and a runtime stage"
    assert all(re.search(r":\d+\.\d+\.\d+-", base) for base in bases), bases
    assert bases[-1].startswith("nginxinc/nginx-unprivileged:")
    final = text.split("FROM ")[-1]
    assert "COPY --from=build /src/dist /usr/share/nginx/html" in final
    assert re.search(r"^USER 101$", final, re.MULTILINE)
    assert "npm ci" in text, "the lock file decides the dependencies"
    assert (WEB / "package-lock.json").is_file()


def _nginx_target(path: str) -> str:
    """Who nginx (compose) sends ``path`` to: the longest prefix wins, exact first."""
    path = path.split("?", maxsplit=1)[0]
    routes = (ROOT / "deploy" / "web" / "routes.conf").read_text()
    proxied: dict[tuple[str, str], str] = {}
    for match in re.finditer(r"location\s+(=\s+)?(\S+)\s*\{\s*proxy_pass\s+(\S+);", routes):
        proxied[(match.group(1) or "").strip(), match.group(2)] = match.group(3)
    for (exact, location), upstream in proxied.items():
        if exact and path == location:
            return upstream
    prefixes = [(loc, up) for (exact, loc), up in proxied.items() if not exact]
    matching = [(loc, up) for loc, up in prefixes if path.startswith(loc)]
    return max(matching)[1] if matching else "static"


def _gateway_target(path: str) -> str:
    """Who the Istio gateway sends ``path`` to, by the rendered VirtualServices."""
    path = path.split("?", maxsplit=1)[0]
    docs = [
        doc
        for name in ("virtualservice.yaml", "web.yaml")
        for doc in yaml.safe_load_all((ROOT / "k8s" / "mesh" / name).read_text())
        if doc and doc["kind"] == "VirtualService"
    ]
    found = []
    for doc in docs:
        for route in doc["spec"]["http"]:
            for match in route["match"]:
                uri = match["uri"]
                if uri.get("exact") == path or ("prefix" in uri and path.startswith(uri["prefix"])):
                    found.append(route["route"][0]["destination"]["host"].split(".")[0])
    assert len(set(found)) <= 1, f"{path} matches routes to {found}: their order would decide"
    return found[0] if found else "none"


@pytest.mark.parametrize(("path", "owner"), ROUTES.items())
def test_one_set_of_routes_locally_in_compose_and_in_the_cluster(path: str, owner: str) -> None:
    local = {"api": "api", "jaeger": "traces", "analysis": "traces", "player": None}[owner]
    upstream = front.upstream_for(
        path.split("?", maxsplit=1)[0], {"api": "api", "traces": "traces"}
    )
    assert upstream == local, path
    compose = {
        "api": "http://drama-service:8080",
        "jaeger": "http://jaeger:16686",
        "analysis": "http://trace-analysis:16687",
        "player": "static",
    }
    assert _nginx_target(path) == compose[owner], path
    cluster = {"api": "drama-service", "jaeger": "jaeger", "analysis": "trace-analysis"}
    assert _gateway_target(path) == cluster.get(owner, "web"), path


@pytest.mark.integration
def test_minio_in_compose_answers_cors_for_the_player_origins_only() -> None:
    """MinIO's default is any origin; compose names exactly the origins the player is published
    on (localhost and 127.0.0.1, each published port of the web service)."""
    services = compose_config()["services"]
    ports = [p["published"] for p in services["web"]["ports"]]
    assert ports
    assert all(p["host_ip"] == "127.0.0.1" for p in services["web"]["ports"])
    expected = {f"http://{host}:{port}" for port in ports for host in ("localhost", "127.0.0.1")}
    allowed = services["minio"]["environment"]["MINIO_API_CORS_ALLOW_ORIGIN"].split(",")
    assert set(allowed) == expected
    assert "*" not in allowed
