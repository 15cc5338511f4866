"""Offline checks of k8s/: both overlays render, every object is valid for what reads it, and the
settings that matter (security, probes, scaling, mesh, RabbitMQ, Terraform wiring) are there.

Core kinds are validated against the Kubernetes 1.32 schemas in strict mode; Istio, KEDA and
Prometheus Operator objects against the cloudcoil models with unknown fields rejected at every
level; the RabbitMQ operators' kinds have no model, so their fields are asserted here, and the
users' permissions must equal compose's, which test_rabbitmq_permissions.py tries on the real
broker. checkov scans each rendered overlay once.

``python -m tests.infra.test_k8s`` regenerates the PrometheusRules in
k8s/observability/prometheus-rules from observability/prometheus/rules (kustomize cannot build
a PrometheusRule from a rule file); the tests fail when they drift.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cloudcoil.pydantic
import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml

from broker.rpc import RpcWorker
from tests.infra import crds
from tests.infra.conftest import (
    EKS_OVERLAY_KEYS,
    K8S,
    NAMESPACE,
    ROOT,
    Doc,
    eks_terraform_env,
    guide_helm_values,
    run,
)

SERVICES = ("drama-service", "episode-service", "stream-service")
WORKERS = {"episode-service": "rpc.episode", "stream-service": "rpc.stream"}
PROBE_PORTS = {
    "drama-service": "http",
    "episode-service": "http-metrics",
    "stream-service": "http-metrics",
}
RULES_SOURCE = ROOT / "observability" / "prometheus" / "rules"
RULES_OUT = K8S / "observability" / "prometheus-rules"
DASHBOARDS = ROOT / "observability" / "grafana" / "dashboards"
KUBERNETES_VERSION = "1.32.0"
WRITABLE_TMP = "/tmp"  # noqa: S108 - the path the pods mount an emptyDir on, not a file here


@functools.cache
def models() -> dict[tuple[str, str], type[pydantic.BaseModel]]:
    """The cloudcoil model of each custom kind, imported on first use: thousands of pydantic
    classes (~3 s), which the worker that validates pays, not every collection of the suite."""
    # Unknown fields must fail: the cloudcoil models allow extras by default, and a model class
    # copies its base's config when it is created, so this must run before they are imported.
    cloudcoil.pydantic.BaseModel.model_config["extra"] = "forbid"
    from cloudcoil.models.istio.networking import v1 as istio_networking  # noqa: PLC0415
    from cloudcoil.models.istio.security import v1 as istio_security  # noqa: PLC0415
    from cloudcoil.models.istio.telemetry import v1 as istio_telemetry  # noqa: PLC0415
    from cloudcoil.models.keda import v1alpha1 as keda  # noqa: PLC0415
    from cloudcoil.models.prometheus_operator import v1 as prometheus  # noqa: PLC0415

    return {
        ("networking.istio.io/v1", "Gateway"): istio_networking.Gateway,
        ("networking.istio.io/v1", "VirtualService"): istio_networking.VirtualService,
        ("networking.istio.io/v1", "DestinationRule"): istio_networking.DestinationRule,
        ("security.istio.io/v1", "PeerAuthentication"): istio_security.PeerAuthentication,
        ("security.istio.io/v1", "AuthorizationPolicy"): istio_security.AuthorizationPolicy,
        ("telemetry.istio.io/v1", "Telemetry"): istio_telemetry.Telemetry,
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): prometheus.PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus.PrometheusRule,
    }


# checkov findings accepted, each with its reason. Nothing else may fail.
CHECKOV_SKIPS = {
    # Third-party images are pinned by digest (docs/image-digests.md) but Jaeger (no digest of
    # its tag found). Ours is an immutable ECR tag on EKS (the commit SHA; its digest exists
    # only after the build) and the local build loaded with `kind load`.
    "CKV_K8S_43": "ours by immutable tags, Jaeger by its exact release tag (see above)",
    # "Prefer secrets as files": the services read their settings, AMQP_URL and DATABASE_URL
    # included, from the environment only (Settings.from_env, repr=False for the URLs), and
    # botocore reads MinIO's keys from AWS_* variables. Each Secret is the one service's own.
    "CKV_K8S_35": "the services take their settings, URLs included, from the environment only",
}
LOCAL_CHECKOV_SKIPS = {
    # kind has no registry: `kind load docker-image` puts the image on the node, and pulling
    # it (imagePullPolicy Always) would fail.
    "CKV_K8S_15": "kind loads the image onto the node; there is no registry to pull from",
}


def prometheus_rule_text(source: Path) -> str:
    """The PrometheusRule for one rule file: its text indented under ``spec:``, comments kept."""
    body = "".join(
        f"  {line}" if line.strip() else line
        for line in source.read_text().splitlines(keepends=True)
    )
    return (
        f"# Generated from observability/prometheus/rules/{source.name} by\n"
        "# `python -m tests.infra.test_k8s`: edit the source, then regenerate.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        f"  name: drama-streaming-{source.stem}\n"
        "  labels:\n"
        "    release: kube-prometheus-stack\n"
        "spec:\n"
        f"{body}"
    )


def write_prometheus_rules() -> None:
    """Regenerate k8s/observability/prometheus-rules from the rule files."""
    RULES_OUT.mkdir(exist_ok=True)
    for source in sorted(RULES_SOURCE.glob("*.yml")):
        (RULES_OUT / f"{source.stem}.yaml").write_text(prometheus_rule_text(source))


# --- rendering ------------------------------------------------------------------------------


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(kind/name, pod spec) of every workload."""
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


def container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == deployment["metadata"]["name"])


def labels(doc: Doc) -> dict[str, str]:
    found: dict[str, str] = doc["metadata"].get("labels", {})
    return found


def env_value(c: Doc, name: str) -> str:
    value: str = next(e["value"] for e in c["env"] if e["name"] == name)
    return value


# --- schemas --------------------------------------------------------------------------------


def test_core_objects_are_valid_kubernetes_1_32(docs: list[Doc]) -> None:
    """Strict: a misspelt or misplaced field of a core kind fails, not only a wrong type. A kind
    the 1.32 schemas do not know raises SchemaNotFoundError, so no object escapes validation;
    custom resources are validated against their CRDs in test_crds.py."""
    errors = []
    core = [d for d in docs if not crds.is_custom(d)]  # custom kinds: test_crds.py
    for doc in core:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)
    assert len(core) > 30


def test_custom_resources_match_their_models(docs: list[Doc]) -> None:
    """Every Istio, KEDA and Prometheus Operator object parses with unknown fields rejected."""
    errors = []
    for doc in docs:
        model = models().get((doc["apiVersion"], doc["kind"]))
        if model is None:
            continue
        try:
            model.model_validate(doc)
        except pydantic.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not errors, "\n".join(errors)


def test_models_reject_a_misspelt_field() -> None:
    """The check above can fail: a typo deep inside a spec is an error, not silently dropped."""
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "x", "namespace": NAMESPACE},
        "spec": {"host": "x", "trafficPolicy": {"outlierDetection": {"consecutive5xxError": 5}}},
    }
    with pytest.raises(pydantic.ValidationError, match="consecutive5xxError"):
        models()[("networking.istio.io/v1", "DestinationRule")].model_validate(doc)


# --- workloads ------------------------------------------------------------------------------


def test_pods_run_hardened(docs: list[Doc]) -> None:
    """Non-root high UID/GID, seccomp, no token, read-only root with a /tmp emptyDir, no
    privilege escalation, no capabilities, requests and limits: every pod we ship."""
    for name, spec in pod_specs(docs):
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc["runAsUser"] >= 10000, name
        assert sc["runAsGroup"] >= 10000, name
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] not in {"", "default"}, name
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for c in spec["containers"] + spec.get("initContainers", []):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert csc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert csc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "add" not in csc["capabilities"], (name, c["name"])
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (name, c["name"], kind)
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == WRITABLE_TMP]
            assert tmp, (name, c["name"], "no writable /tmp")
            assert tmp[0]["name"] in empty_dirs, (name, c["name"])


def test_long_running_containers_have_distinct_probes(docs: list[Doc]) -> None:
    for kind in ("Deployment", "StatefulSet"):
        for d in find(docs, kind):
            for c in d["spec"]["template"]["spec"]["containers"]:
                live, ready = c.get("livenessProbe"), c.get("readinessProbe")
                assert live, (d["metadata"]["name"], c["name"])
                assert ready, (d["metadata"]["name"], c["name"])
                assert live != ready, (d["metadata"]["name"], c["name"])


def test_services_probe_their_health_endpoints(docs: list[Doc]) -> None:
    """The contract: liveness /healthz, readiness /readyz, on the port that serves them."""
    for service in SERVICES:
        deployment = one(docs, "Deployment", service)
        c = container(deployment)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": PROBE_PORTS[service]}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": PROBE_PORTS[service]}
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == service
        zones = [t for t in spec["topologySpreadConstraints"] if "zone" in t["topologyKey"]]
        assert zones, f"{service} is not spread over zones"
        assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "drama-streaming"


def test_workers_wait_for_the_proxy_and_outlive_their_drain(docs: list[Doc]) -> None:
    grace = inspect.signature(RpcWorker).parameters["grace"].default
    for worker in WORKERS:
        template = one(docs, "Deployment", worker)["spec"]["template"]
        proxy = json.loads(template["metadata"]["annotations"]["proxy.istio.io/config"])
        assert proxy["holdApplicationUntilProxyStarts"] is True
        assert template["spec"]["terminationGracePeriodSeconds"] > grace


def test_every_deployment_has_a_disruption_budget(docs: list[Doc]) -> None:
    budgets = [p["spec"]["selector"]["matchLabels"] for p in find(docs, "PodDisruptionBudget")]
    for d in find(docs, "Deployment"):
        labels = d["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b.items() <= labels.items()]
        assert len(covering) == 1, f"Deployment/{d['metadata']['name']}: {len(covering)} PDBs"


def test_autoscaled_deployments_leave_replicas_to_the_scaler(docs: list[Doc]) -> None:
    """drama-service by an HPA on CPU, the workers by KEDA on their queue's ready messages;
    a `replicas:` on their Deployments would reset the scaler's count on every apply."""
    hpa = one(docs, "HorizontalPodAutoscaler", "drama-service")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "drama-service",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    scaled = {"drama-service"}
    auths = {t["metadata"]["name"]: t for t in find(docs, "TriggerAuthentication")}
    for worker, queue in WORKERS.items():
        so = one(docs, "ScaledObject", worker)
        assert so["spec"]["scaleTargetRef"]["name"] == worker
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == queue
        assert trigger["metadata"]["mode"] == "QueueLength"
        auth = auths[trigger["authenticationRef"]["name"]]
        assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"host"}
        scaled.add(worker)
    for name in scaled:
        assert "replicas" not in one(docs, "Deployment", name)["spec"], name


def test_seed_job_seeds_each_store(docs: list[Doc], overlay: str) -> None:
    """One Job, so no two replicas race on a schema; the media only where MinIO is (local)."""
    spec = one(docs, "Job", "seed")["spec"]["template"]["spec"]
    steps = spec.get("initContainers", []) + spec["containers"]
    commands = [c["command"] for c in steps if c["command"][0] == "python"]
    services = ["drama", "episode"] + (["stream"] if overlay == "local" else [])
    assert sorted(commands) == [["python", "-m", s, "seed"] for s in services]
    if overlay == "local":  # MinIO's bucket and users first, as compose's minio-init
        names = [c["name"] for c in steps]
        assert names.index("minio-init") < names.index("stream-seed")
        (init,) = [c for c in steps if c["name"] == "minio-init"]
        assert init["command"] == ["/bin/sh", "/init/init.sh"]
        script = one(docs, "ConfigMap", "minio-init")["data"]["init.sh"]
        assert script == (ROOT / "deploy" / "minio" / "init.sh").read_text()
    # A sidecar would keep the Job's pod from completing.
    annotations = one(docs, "Job", "seed")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"


# --- namespace, network, mesh ---------------------------------------------------------------


def test_namespace_is_meshed_and_holds_everything(docs: list[Doc]) -> None:
    ns = one(docs, "Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"
    for d in docs:
        if d["kind"] in {"Namespace"}:
            continue
        # The ALB's Ingress and the gateway's tracing belong with the gateway.
        expected = "istio-ingress" if d["kind"] in {"Ingress", "Telemetry"} else NAMESPACE
        namespaces = {expected, NAMESPACE}
        assert d["metadata"].get("namespace") in namespaces, f"{d['kind']}/{d['metadata']['name']}"


def test_network_is_denied_by_default_and_allowed_by_list(docs: list[Doc]) -> None:
    deny = one(docs, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    drama = one(docs, "NetworkPolicy", "drama-service")["spec"]
    (from_gateway,) = [
        rule
        for rule in drama["ingress"]
        if {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-ingress"}}}
        in rule["from"]
    ]
    assert from_gateway["ports"] == [{"protocol": "TCP", "port": 8080}]
    rabbitmq = one(docs, "NetworkPolicy", "rabbitmq")["spec"]
    amqp = next(
        r for r in rabbitmq["ingress"] if r.get("ports") == [{"protocol": "TCP", "port": 5671}]
    )
    callers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in amqp["from"]}
    assert callers == set(SERVICES)


def test_mesh_is_strict_and_authorizes_by_principal(docs: list[Doc]) -> None:
    (peer,) = find(docs, "PeerAuthentication")
    assert "selector" not in peer["spec"]
    assert peer["spec"]["mtls"] == {"mode": "STRICT"}
    assert "portLevelMtls" not in peer["spec"]
    policy = one(docs, "AuthorizationPolicy", "drama-service")["spec"]
    assert policy["action"] == "ALLOW"
    gateway_rule = policy["rules"][0]
    assert gateway_rule["from"][0]["source"]["principals"] == [
        "cluster.local/ns/istio-ingress/sa/istio-ingressgateway"
    ]
    assert gateway_rule["to"][0]["operation"]["methods"] == ["GET", "HEAD"]
    assert one(docs, "AuthorizationPolicy", "deny-by-default")["spec"] == {}
    for service in SERVICES:
        rule = one(docs, "DestinationRule", service)["spec"]["trafficPolicy"]
        assert rule["tls"] == {"mode": "ISTIO_MUTUAL"}
        assert rule["outlierDetection"]["consecutive5xxErrors"] > 0
    telemetries = find(docs, "Telemetry")
    assert {t["metadata"]["namespace"] for t in telemetries} == {NAMESPACE, "istio-ingress"}
    for telemetry in telemetries:
        (tracing,) = telemetry["spec"]["tracing"]
        assert tracing["providers"] == [{"name": "jaeger-otel"}]
        assert 0 < tracing["randomSamplingPercentage"] <= 100


def test_gateway_routes_the_api_to_drama_service(docs: list[Doc]) -> None:
    vs = one(docs, "VirtualService", "drama-service")["spec"]
    (route,) = vs["http"]
    prefixes = [m["uri"] for m in route["match"]]
    assert {"prefix": "/dramas"} in prefixes
    assert {"exact": "/healthz"} in prefixes
    assert route["route"][0]["destination"]["host"].startswith("drama-service.")
    assert route["retries"]["attempts"] >= 1


# --- RabbitMQ -------------------------------------------------------------------------------


def test_rabbitmq_cluster(docs: list[Doc], overlay: str) -> None:
    spec = one(docs, "RabbitmqCluster", "rabbitmq")["spec"]
    assert spec["replicas"] == (3 if overlay == "eks" else 1)
    assert {"rabbitmq_prometheus", "rabbitmq_management"} <= set(
        spec["rabbitmq"]["additionalPlugins"]
    )
    config = [line.split("=") for line in spec["rabbitmq"]["additionalConfig"].splitlines()]
    assert ["default_queue_type ", " quorum"] in config
    template = spec["override"]["statefulSet"]["spec"]["template"]
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    for kind in ("requests", "limits"):
        assert set(spec["resources"][kind]) == {"cpu", "memory"}, kind
    assert spec["persistence"]["storage"]
    anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"


def test_rabbitmq_users_import_their_secrets(docs: list[Doc]) -> None:
    users = {u["metadata"]["name"]: u["spec"] for u in find(docs, "User")}
    assert set(users) == {*SERVICES, "keda"}
    for name, spec in users.items():
        assert spec["rabbitmqClusterReference"] == {"name": "rabbitmq"}
        assert spec["importCredentialsSecret"]["name"] in {f"{name}-amqp", "keda-rabbitmq"}
        assert set(spec.get("tags", [])) <= {"management"}, name
    permissions = {p["spec"]["userReference"]["name"]: p["spec"] for p in find(docs, "Permission")}
    assert set(permissions) == set(users)
    assert permissions["keda"]["permissions"] == {"configure": "^$", "write": "^$", "read": "^$"}


def test_rabbitmq_permissions_are_composes_proven_ones(docs: list[Doc]) -> None:
    """The same least-privilege regexes as deploy/rabbitmq/definitions.json, which
    test_rabbitmq_permissions.py proves on the real broker (enough for a round trip, and each
    user refused what it must not do); here the vhost is "/"."""
    definitions = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    compose = {p["user"]: p for p in definitions["permissions"]}
    for service in SERVICES:
        spec = one(docs, "Permission", service)["spec"]
        assert spec["vhost"] == "/"
        expected = {k: compose[service][k] for k in ("configure", "write", "read")}
        assert spec["permissions"] == expected, service


def secret_refs(docs: list[Doc]) -> set[tuple[str, str]]:
    """(Secret, key) pairs the manifests read: env, RabbitMQ user imports, KEDA auth."""
    refs = set()
    for _, spec in pod_specs(docs):
        for c in spec["containers"] + spec.get("initContainers", []):
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    for user in find(docs, "User"):
        secret = user["spec"]["importCredentialsSecret"]["name"]
        refs |= {(secret, "username"), (secret, "password")}
    for auth in find(docs, "TriggerAuthentication"):
        refs |= {(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    # Secrets the Secrets Store CSI driver syncs from Secrets Manager (eks: RDS), not the script's.
    synced = {
        (o["secretName"], d["key"])
        for spc in find(docs, "SecretProviderClass")
        for o in spc["spec"]["secretObjects"]
        for d in o["data"]
    }
    return refs - synced


def create_secrets(
    tmp_path: Path, existing: dict[str, dict[str, str]] | None = None
) -> subprocess.CompletedProcess[str]:
    """k8s/create-secrets.sh --local against a kubectl that knows the ``existing`` Secrets and
    renders the ones the script creates (client-side dry run) as YAML documents on stdout."""
    real = subprocess.run(["which", "kubectl"], capture_output=True, text=True, check=True)
    (tmp_path / "existing.json").write_text(json.dumps(existing or {}))
    stub = tmp_path / "kubectl"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import base64, json, subprocess, sys\n"
        "args = sys.argv[1:]\n"
        f"existing = json.load(open({str(tmp_path / 'existing.json')!r}))\n"
        "if 'namespace' in args:\n"
        "    sys.exit(0)\n"
        "if 'get' in args:\n"
        "    data = existing.get(args[args.index('secret') + 1])\n"
        "    if data is None:\n"
        "        sys.exit(1)\n"
        "    for arg in args:\n"
        "        if arg.startswith('jsonpath={.data.'):\n"
        "            value = data[arg.removeprefix('jsonpath={.data.').rstrip('}')]\n"
        "            print(base64.b64encode(value.encode()).decode(), end='')\n"
        "    sys.exit(0)\n"
        f"kubectl = {real.stdout.strip()!r}\n"
        "proc = subprocess.run([kubectl, *args, '--dry-run=client', '-o', 'yaml'])\n"
        "print('---')\n"
        "sys.exit(proc.returncode)\n"
    )
    stub.chmod(0o755)
    return subprocess.run(
        ["bash", K8S / "create-secrets.sh", "--local"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def created_secrets(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    assert proc.returncode == 0, proc.stderr
    return {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
        for d in yaml.safe_load_all(proc.stdout)
        if d
    }


def test_create_secrets_makes_every_secret_the_manifests_read(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """Every (Secret, key) either overlay reads exists, and the URLs carry the same passwords as
    the users and databases they name."""
    created = created_secrets(create_secrets(tmp_path))
    have = {(name, key) for name, data in created.items() for key in data}
    for overlay, docs in rendered.items():
        missing = secret_refs(docs) - have
        assert not missing, f"{overlay}: {sorted(missing)}"
    for service in SERVICES:
        amqp = created[f"{service}-amqp"]
        url = urllib.parse.urlsplit(amqp["AMQP_URL"])
        assert (url.username, url.password) == (amqp["username"], amqp["password"])
        assert url.hostname == f"rabbitmq.{NAMESPACE}.svc"
    postgres = created["postgres-credentials"]
    # Role and database share the service's name (deploy/postgres/init-databases.sh).
    for service in ("drama", "episode"):
        url = urllib.parse.urlsplit(created[f"{service}-service-db"]["DATABASE_URL"])
        assert (url.username, url.path) == (service, f"/{service}")
        assert url.password == postgres[f"{service.upper()}_DB_PASSWORD"]


@pytest.mark.integration
def test_create_secrets_completes_a_partial_run_with_the_kept_passwords(tmp_path: Path) -> None:
    """A first run stopped after postgres-credentials: PostgreSQL set the roles' passwords from
    it, so the DATABASE_URLs made now must carry those, not new random ones."""
    kept = {"POSTGRES_PASSWORD": "su", "DRAMA_DB_PASSWORD": "d0", "EPISODE_DB_PASSWORD": "e0"}
    created = created_secrets(create_secrets(tmp_path, {"postgres-credentials": kept}))
    assert "postgres-credentials" not in created  # kept as it is
    for service, password in (("drama", "d0"), ("episode", "e0")):
        url = urllib.parse.urlsplit(created[f"{service}-service-db"]["DATABASE_URL"])
        assert url.password == password, service


@pytest.mark.integration
@pytest.mark.parametrize("owner_exists", [True, False])
def test_create_secrets_refuses_a_database_url_its_role_does_not_have(
    tmp_path: Path, *, owner_exists: bool
) -> None:
    """A kept DATABASE_URL whose password differs from postgres-credentials' (or whose owner
    Secret is gone) can never log in: stop with a message instead of completing the set."""
    existing = {
        "drama-service-db": {
            "DATABASE_URL": f"postgresql+asyncpg://drama:stale@postgres.{NAMESPACE}.svc:5432/drama"
        }
    }
    if owner_exists:
        existing["postgres-credentials"] = {
            "POSTGRES_PASSWORD": "su",
            "DRAMA_DB_PASSWORD": "d0",
            "EPISODE_DB_PASSWORD": "e0",
        }
    proc = create_secrets(tmp_path, existing)
    assert proc.returncode != 0
    assert "delete secret/drama-service-db and rerun" in proc.stderr
    made = {d["metadata"]["name"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert not made & {"postgres-credentials", "drama-service-db", "episode-service-db"}


def test_stream_service_never_gets_minio_root_credentials(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """stream-service signs URLs as MinIO user stream-service, which init.sh allows s3:GetObject
    only: the key it reads names that user, and its secret is the one minio-init gives it."""
    for overlay, docs in rendered.items():
        spec = one(docs, "Deployment", "stream-service")["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            refs = {
                (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            } | {(e["secretRef"]["name"], "*") for e in c.get("envFrom", []) if "secretRef" in e}
            assert not {name for name, _ in refs} & {"minio-credentials"}, (overlay, c["name"])
            assert not {key for _, key in refs} & {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    local = rendered["local"]
    stream = container(one(local, "Deployment", "stream-service"))
    by_name = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in stream["env"] if "valueFrom" in e}
    seed = one(local, "Job", "seed")["spec"]["template"]["spec"]
    (init,) = [c for c in seed["initContainers"] if c["name"] == "minio-init"]
    given = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"] if "valueFrom" in e}
    assert by_name["AWS_SECRET_ACCESS_KEY"] == given["STREAM_SERVICE_SECRET"]
    created = created_secrets(create_secrets(tmp_path))
    key = by_name["AWS_ACCESS_KEY_ID"]
    assert created[key["name"]][key["key"]] == "stream-service"
    script = (ROOT / "deploy" / "minio" / "init.sh").read_text()
    assert 'grant stream-service "$STREAM_SERVICE_SECRET" media-read' in script


# --- observability --------------------------------------------------------------------------


def test_prometheus_rules_equal_their_source_files(docs: list[Doc]) -> None:
    sources = sorted(RULES_SOURCE.glob("*.yml"))
    rules = {r["metadata"]["name"]: r for r in find(docs, "PrometheusRule")}
    assert set(rules) == {f"drama-streaming-{s.stem}" for s in sources}
    for source in sources:
        rule = rules[f"drama-streaming-{source.stem}"]
        assert rule["spec"] == yaml.safe_load(source.read_text()), (
            f"{source.name} changed: run `python -m tests.infra.test_k8s`"
        )
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        generated = RULES_OUT / f"{source.stem}.yaml"
        assert generated.read_text() == prometheus_rule_text(source)


def test_dashboards_are_configmaps_of_the_json_files(docs: list[Doc]) -> None:
    maps = [m for m in find(docs, "ConfigMap") if "grafana_dashboard" in labels(m)]
    by_file = {key: (m, text) for m in maps for key, text in m["data"].items()}
    files = sorted(DASHBOARDS.glob("*.json"))
    assert set(by_file) == {f.name for f in files}
    for f in files:
        configmap, text = by_file[f.name]
        assert text == f.read_text(), f.name
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_monitors_scrape_every_job_the_rules_use(docs: list[Doc]) -> None:
    """Job names as in observability/prometheus/prometheus.yml, and the label the
    kube-prometheus-stack Prometheus selects monitors by."""
    monitors = find(docs, "ServiceMonitor") + find(docs, "PodMonitor")
    for m in monitors:
        assert m["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = {m["metadata"]["name"]: m["spec"] for m in find(docs, "ServiceMonitor")}
    assert set(services) == set(SERVICES)
    for name, spec in services.items():
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/name"] == name
        (endpoint,) = spec["endpoints"]
        assert endpoint["port"] == one(docs, "Service", name)["spec"]["ports"][0]["name"]
        assert endpoint["scheme"] == "https"  # mTLS with the Istio certificate
    rabbitmq = one(docs, "PodMonitor", "rabbitmq")["spec"]["podMetricsEndpoints"]
    jobs = {e["relabelings"][0]["replacement"]: e for e in rabbitmq}
    assert set(jobs) == {"rabbitmq", "rabbitmq-queues"}
    assert jobs["rabbitmq-queues"]["path"] == "/metrics/detailed"
    assert all(e["port"] == "prometheus" for e in rabbitmq)
    prom = yaml.safe_load((ROOT / "observability/prometheus/prometheus.yml").read_text())
    families = next(j for j in prom["scrape_configs"] if j["job_name"] == "rabbitmq-queues")
    assert jobs["rabbitmq-queues"]["params"] == families["params"]


def test_jaeger_is_v2_with_otlp_and_ui(docs: list[Doc], overlay: str) -> None:
    jaeger = one(docs, "Deployment", "jaeger")
    assert container(jaeger)["image"].startswith("jaegertracing/jaeger:2.")
    ports = {p["port"] for p in one(docs, "Service", "jaeger")["spec"]["ports"]}
    assert ports == {4317, 4318, 16686}
    (volume,) = [v for v in jaeger["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    configmap = one(docs, "ConfigMap", volume["configMap"]["name"])
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    backends = config["extensions"]["jaeger_storage"]["backends"]
    (store,) = backends
    assert config["extensions"]["jaeger_query"]["storage"]["traces"] == store
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] == store
    if overlay == "local":  # a laptop: memory, lost on restart
        assert "memory" in backends[store]
        return
    # EKS: Badger on a persistent volume, 72 hours of retention.
    badger = backends[store]["badger"]
    assert badger["ephemeral"] is False
    assert badger["ttl"]["spans"] == "72h"
    spec = jaeger["spec"]["template"]["spec"]
    (mount,) = [m for m in container(jaeger)["volumeMounts"] if m["mountPath"] == "/badger"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    claim = one(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["resources"]["requests"]["storage"]
    for directory in badger["directories"].values():
        assert directory.startswith("/badger/")
    assert jaeger["spec"]["strategy"]["type"] == "Recreate"  # one writer at a time
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]


def test_guide_helm_values_fit_the_manifests(rendered: dict[str, list[Doc]]) -> None:
    """The istiod provider is the one the Telemetry names and points at the Jaeger Service;
    Prometheus mounts the Istio certificates where the ServiceMonitors look for them."""
    docs = rendered["local"]
    values = guide_helm_values()
    assert set(values) == {"istiod", "kube-prometheus-stack"}
    istiod, stack = values["istiod"], values["kube-prometheus-stack"]
    (provider,) = istiod["meshConfig"]["extensionProviders"]
    assert provider["name"] == "jaeger-otel"
    jaeger = one(docs, "Service", "jaeger")
    otel = provider["opentelemetry"]
    assert otel["service"] == f"jaeger.{jaeger['metadata']['namespace']}.svc.cluster.local"
    assert otel["port"] in {p["port"] for p in jaeger["spec"]["ports"]}
    (mount,) = stack["prometheus"]["prometheusSpec"]["volumeMounts"]
    for monitor in find(docs, "ServiceMonitor"):
        tls = monitor["spec"]["endpoints"][0]["tlsConfig"]
        for key in ("caFile", "certFile", "keyFile"):
            assert Path(tls[key]).parent == Path(mount["mountPath"]), (monitor, key)
    datasource = stack["grafana"]["additionalDataSources"][0]
    assert datasource["uid"] == "jaeger"
    assert datasource["url"].endswith(":16686")


# --- eks wiring -----------------------------------------------------------------------------


def test_eks_overlay_takes_the_terraform_outputs(rendered: dict[str, list[Doc]]) -> None:
    outputs = eks_terraform_env()
    assert set(outputs) == set(EKS_OVERLAY_KEYS)
    docs = rendered["eks"]
    sa = one(docs, "ServiceAccount", "stream-service")
    assert (
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == outputs["STREAM_SERVICE_ROLE_ARN"]
    )
    for service in SERVICES:
        assert container(one(docs, "Deployment", service))["image"] == outputs["IMAGE"]
    assert container(one(docs, "Deployment", "web"))["image"] == outputs["WEB_IMAGE"]
    # No image of ours is left with its local name (drama-streaming*:0.1.0): all come from ECR.
    ours = {outputs["IMAGE"], outputs["WEB_IMAGE"]}
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
            spec = d["spec"]["template"]["spec"]
            for c in spec["containers"] + spec.get("initContainers", []):
                if c["image"].split("/")[-1].startswith("drama-streaming"):
                    assert c["image"] in ours, (d["metadata"]["name"], c["image"])
    seed = one(docs, "Job", "seed")["spec"]["template"]["spec"]
    postgres = one(rendered["local"], "StatefulSet", "postgres")
    for c in seed["initContainers"] + seed["containers"]:
        # db-init runs psql against RDS: the PostgreSQL image the local overlay runs.
        expected = container(postgres)["image"] if c["name"] == "db-init" else outputs["IMAGE"]
        assert c["image"] == expected, c["name"]
    stream = container(one(docs, "Deployment", "stream-service"))
    assert env_value(stream, "MEDIA_BUCKET") == outputs["MEDIA_BUCKET"]
    assert env_value(stream, "AWS_REGION") == outputs["AWS_REGION"]
    assert "S3_ENDPOINT_URL" not in {e["name"] for e in stream["env"]}
    env = one(docs, "ConfigMap", "drama-streaming-env")["data"]
    assert env["RPC_QUEUE_TYPE"] == "quorum"


def test_eks_alb_fronts_the_istio_gateway(rendered: dict[str, list[Doc]]) -> None:
    ingress = one(rendered["eks"], "Ingress", "drama-streaming")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["metadata"]["namespace"] == "istio-ingress"
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/healthz/ready"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-port"] == "15021"
    assert ingress["spec"]["defaultBackend"]["service"]["name"] == "istio-ingressgateway"
    # HTTPS with Terraform's validated ACM certificate; port 80 only redirects to 443.
    listen = json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"])
    assert listen == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    arn = annotations["alb.ingress.kubernetes.io/certificate-arn"]
    assert arn == eks_terraform_env()["CERTIFICATE_ARN"]
    assert arn.startswith("arn:aws:acm:")
    assert not find(rendered["local"], "Ingress")


# --- linters --------------------------------------------------------------------------------


def test_checkov_passes_each_rendered_overlay(
    rendered: dict[str, list[Doc]],
    checkov: Path,
    tmp_path_factory: pytest.TempPathFactory,
    overlay: str,
) -> None:
    """Zero failed checks; the skips (with their reasons) are CHECKOV_SKIPS above."""
    directory = tmp_path_factory.mktemp(f"rendered-{overlay}")
    (directory / "all.yaml").write_text(yaml.safe_dump_all(rendered[overlay]))
    skips = CHECKOV_SKIPS | (LOCAL_CHECKOV_SKIPS if overlay == "local" else {})
    proc = subprocess.run(
        [
            str(checkov),
            "-d",
            str(directory),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--skip-check",
            ",".join(sorted(skips)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["passed"] > 100, summary


@pytest.mark.integration
def test_yamllint_k8s() -> None:
    run(
        sys.executable,
        "-m",
        "yamllint",
        "--strict",
        "-c",
        ROOT / ".yamllint.yaml",
        K8S,
        ROOT / "observability" / "grafana" / "kustomization.yaml",
    )


if __name__ == "__main__":
    write_prometheus_rules()


def test_local_stream_seed_runs_the_seed_target_that_kind_builds_and_loads(
    rendered: dict[str, list[Doc]],
) -> None:
    """Playable media in kind: stream's seed runs the Dockerfile's seed target (ffmpeg), which
    the kind script and the CI job build and load; nothing else runs it."""
    seed = one(rendered["local"], "Job", "seed")["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in seed["initContainers"] + seed["containers"]}
    assert images["stream-seed"] == "drama-streaming-seed:0.1.0"
    (stream,) = [c for c in seed["initContainers"] if c["name"] == "stream-seed"]
    assert stream["command"] == ["python", "-m", "stream", "seed"]
    assert stream["imagePullPolicy"] == "IfNotPresent"
    for overlay, docs in rendered.items():
        for d in docs:
            if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
                spec = d["spec"]["template"]["spec"]
                for c in spec["containers"] + spec.get("initContainers", []):
                    if "drama-streaming-seed" in c["image"]:
                        assert (overlay, c["name"]) == ("local", "stream-seed")
    up = (ROOT / "deploy" / "kind" / "up.sh").read_text()
    assert "docker build --target seed -t drama-streaming-seed:0.1.0 ." in up
    assert 'kind load docker-image drama-streaming-seed:0.1.0 --name "$cluster"' in up
    kind = (ROOT / ".github" / "workflows" / "kind.yml").read_text()
    assert "docker build --pull --target seed -t drama-streaming-seed:0.1.0 ." in kind
