"""The security promises of the deploy files, each checked where it is made: Pod Security
"restricted" on the namespace and every pod in it (the RabbitMQ pods through the cluster's
override), AMQP over TLS verified against cert-manager's CA in Kubernetes and the compose CA in
compose, the services' AMQP admitted on 5671 only. tests/test_amqp_tls.py proves on a real
broker that the services' settings verify the certificate and refuse another CA's."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest
import yaml

from broker.service import ConfigError, Env, WorkerSettings
from tests.infra.compose_files import compose_config, env_file
from tests.infra.conftest import NAMESPACE, ROOT, Doc, eks_terraform_env, run
from tests.infra.test_k8s import SERVICES, container, create_secrets, created_secrets, find, one

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(name: str, spec: Doc) -> list[str]:  # noqa: PLR0912 - one rule each
    """What the Pod Security "restricted" profile (v1.32) refuses in a pod spec."""
    out = []
    pod = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{name}: {key}")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            out.append(f"{name}: volume {volume['name']} {kinds}")
    pod_seccomp = pod.get("seccompProfile", {}).get("type")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{where}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{where}: adds {caps['add']}")
        if sc.get("privileged"):
            out.append(f"{where}: privileged")
        if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            out.append(f"{where}: runAsNonRoot not true")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            out.append(f"{where}: runs as root")
        if sc.get("seccompProfile", {}).get("type", pod_seccomp) not in {
            "RuntimeDefault",
            "Localhost",
        }:
            out.append(f"{where}: no seccomp profile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{where}: hostPort")
    return out


def test_namespace_enforces_pod_security_restricted(docs: list[Doc]) -> None:
    ns_labels = one(docs, "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert ns_labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", mode


def test_every_pod_meets_restricted(docs: list[Doc]) -> None:
    problems = []
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
            name = f"{d['kind']}/{d['metadata']['name']}"
            problems += restricted_violations(name, d["spec"]["template"]["spec"])
    assert not problems, "\n".join(problems)


def test_rabbitmq_pods_meet_restricted_through_the_override(docs: list[Doc]) -> None:
    """The operator makes containers rabbitmq and setup-container without seccomp, escalation
    or capability settings; the override (merged by name) supplies them."""
    override = one(docs, "RabbitmqCluster", "rabbitmq")["spec"]["override"]["statefulSet"]
    spec = override["spec"]["template"]["spec"]
    assert {c["name"] for c in spec["containers"]} == {"rabbitmq"}
    assert {c["name"] for c in spec["initContainers"]} == {"setup-container"}
    assert restricted_violations("RabbitmqCluster/rabbitmq", spec) == []


def test_the_mesh_needs_no_privileged_init_container() -> None:
    """istio-init needs NET_ADMIN/NET_RAW, which restricted refuses: both installs use the
    istio-cni node agent instead."""
    guide = (ROOT / "docs" / "deploy-kubernetes.md").read_text()
    assert "helm install istio-cni istio/cni" in guide
    addons = (ROOT / "terraform" / "modules" / "addons" / "main.tf").read_text()
    assert 'chart      = "cni"' in addons
    istiod = (ROOT / "terraform" / "modules" / "addons" / "values" / "istiod.yaml").read_text()
    assert "cni:\n    enabled: true" in istiod


def test_broker_tls_comes_from_cert_manager(docs: list[Doc]) -> None:
    cluster = one(docs, "RabbitmqCluster", "rabbitmq")["spec"]
    certificates = {c["spec"]["secretName"]: c["spec"] for c in find(docs, "Certificate")}
    server = certificates[cluster["tls"]["secretName"]]
    assert f"rabbitmq.{NAMESPACE}.svc" in server["dnsNames"]
    assert f"*.rabbitmq-nodes.{NAMESPACE}.svc" in server["dnsNames"]
    assert "server auth" in server["usages"]
    issuer = one(docs, "Issuer", server["issuerRef"]["name"])["spec"]
    ca = certificates[issuer["ca"]["secretName"]]
    assert ca["isCA"] is True
    assert one(docs, "Issuer", ca["issuerRef"]["name"])["spec"] == {"selfSigned": {}}
    # The topology operator does not trust this CA: it must be pointed at the plain management
    # listener (rabbitmqclient.ParseReference would otherwise pick https on 15671).
    annotations = one(docs, "RabbitmqCluster", "rabbitmq")["metadata"]["annotations"]
    uri = urllib.parse.urlsplit(annotations["rabbitmq.com/operator-connection-uri"])
    assert (uri.scheme, uri.hostname, uri.port) == ("http", f"rabbitmq.{NAMESPACE}.svc", 15672)


def test_services_verify_the_broker_with_the_ca_only(docs: list[Doc], tmp_path: Path) -> None:
    env = one(docs, "ConfigMap", "drama-streaming-env")["data"]
    ca_file = Path(env["AMQP_CA_FILE"])
    secret = one(docs, "RabbitmqCluster", "rabbitmq")["spec"]["tls"]["secretName"]
    for service in SERVICES:
        deployment = one(docs, "Deployment", service)
        c = container(deployment)
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(ca_file.parent)]
        assert mount.get("readOnly") is True
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        (volume,) = [v for v in volumes if v["name"] == mount["name"]]
        # The CA certificate only: the server's tls.key is not projected into client pods.
        assert volume["secret"] == {
            "secretName": secret,
            "items": [{"key": "ca.crt", "path": ca_file.name}],
        }
    created = created_secrets(create_secrets(tmp_path))
    for service in SERVICES:
        url = urllib.parse.urlsplit(created[f"{service}-amqp"]["AMQP_URL"])
        assert (url.scheme, url.port) == ("amqps", 5671), service


def test_services_reach_the_broker_on_tls_only(docs: list[Doc]) -> None:
    policies = find(docs, "NetworkPolicy")
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            to_broker = any(
                t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                == "rabbitmq"
                for t in rule.get("to", [])
            )
            if to_broker and policy["metadata"]["name"] != "rabbitmq":
                assert rule["ports"] == [{"protocol": "TCP", "port": 5671}], policy
    broker = one(docs, "NetworkPolicy", "rabbitmq")["spec"]["ingress"]
    for rule in broker:
        ports = {p["port"] for p in rule.get("ports", [])}
        sources = rule.get("from", [])
        from_services = {
            s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for s in sources
        } & set(SERVICES)
        if from_services:
            assert ports == {5671}, rule


@pytest.mark.integration
def test_compose_speaks_amqp_over_tls_only() -> None:
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
    settings = dict(line.split(" = ", 1) for line in conf if " = " in line and line[0] != "#")
    assert settings["listeners.tcp"] == "none"
    assert settings["listeners.ssl.default"] == "5671"
    model = compose_config()
    services = model["services"]
    tls_dir = next(v for v in services["rabbitmq"]["volumes"] if v["target"] == "/etc/rabbitmq/tls")
    assert settings["ssl_options.certfile"].startswith(tls_dir["target"])
    for service in SERVICES:
        env = env_file(f"{service}.env")
        url = urllib.parse.urlsplit(env["AMQP_URL"])
        assert (url.scheme, url.hostname, url.port) == ("amqps", "rabbitmq", 5671), service
        (mount,) = [
            v
            for v in services[service]["volumes"]
            if v["target"] == str(Path(env["AMQP_CA_FILE"]).parent)
        ]
        assert mount["source"] == tls_dir["source"]
        assert mount["volume"]["subpath"] == "ca"  # not the broker's key
        assert mount["read_only"] is True
        assert "amqp-certs" in services["rabbitmq"]["depends_on"]
    published = {p["target"] for p in services["rabbitmq"].get("ports", [])}
    assert not published & {5671, 5672}, "AMQP is for the compose network only"


def test_plain_amqp_settings_refuse_a_remote_broker() -> None:
    """The settings the three services read: plain amqp:// is loopback-only (make run)."""
    env = Env({"AMQP_URL": "amqp://u:p@rabbitmq.drama-streaming.svc:5672/"})
    with pytest.raises(ConfigError, match="use amqps://"):
        WorkerSettings.from_env(env, prefetch=1, metrics_port=9)


def test_eks_reads_database_urls_from_rds_secrets(rendered: dict[str, list[Doc]]) -> None:
    """On EKS no PostgreSQL runs in the cluster; each service mounts its own SecretProviderClass
    (the mount makes the driver sync the Secret its DATABASE_URL names) and runs as the
    ServiceAccount whose IRSA role may read that secret; the seed creates roles and databases."""
    eks = rendered["eks"]
    assert not [d for d in eks if d["metadata"]["name"] == "postgres" and d["kind"] != "ConfigMap"]
    assert find(rendered["local"], "StatefulSet")  # the local overlay keeps its PostgreSQL
    env = eks_terraform_env()
    classes = {c["metadata"]["name"]: c["spec"] for c in find(eks, "SecretProviderClass")}
    for service, arn_key in (
        ("drama-service", "DRAMA_DB_SECRET_ARN"),
        ("episode-service", "EPISODE_DB_SECRET_ARN"),
    ):
        deployment = one(eks, "Deployment", service)
        spec = deployment["spec"]["template"]["spec"]
        (csi,) = [v["csi"] for v in spec["volumes"] if "csi" in v]
        spc = classes[csi["volumeAttributes"]["secretProviderClass"]]
        assert spc["provider"] == "aws"
        (obj,) = yaml.safe_load(spc["parameters"]["objects"])
        assert obj["objectName"] == env[arn_key]
        ref = next(e for e in container(deployment)["env"] if e["name"] == "DATABASE_URL")
        ref = ref["valueFrom"]["secretKeyRef"]
        (synced,) = spc["secretObjects"]
        assert synced["secretName"] == ref["name"]
        assert ref["key"] in {d["key"] for d in synced["data"]}
        sa = one(eks, "ServiceAccount", spec["serviceAccountName"])
        role = env[f"{service.split('-')[0].upper()}_SERVICE_ROLE_ARN"]
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    seed = one(eks, "Job", "seed")["spec"]["template"]["spec"]
    assert seed["initContainers"][0]["name"] == "db-init"
    seed_objects = yaml.safe_load(classes["seed-db"]["parameters"]["objects"])
    assert [o["objectName"] for o in seed_objects] == [
        env["DB_MASTER_SECRET_ARN"],
        env["DRAMA_DB_SECRET_ARN"],
        env["EPISODE_DB_SECRET_ARN"],
    ]
    sa = one(eks, "ServiceAccount", "seed")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == env["SEED_ROLE_ARN"]
    for name in ("drama-service", "episode-service", "seed"):
        egress = one(eks, "NetworkPolicy", name)["spec"]["egress"]
        to_db = [r for r in egress if r["ports"] == [{"protocol": "TCP", "port": 5432}]]
        assert [r["to"] for r in to_db] == [[{"ipBlock": {"cidr": env["VPC_CIDR"]}}]], name


OFFICIAL_DIGESTS = {
    # docker-library/repo-info: repos/rabbitmq/remote/4.1.8-management.md (commit 0639f311),
    # repos/postgres/remote/17.11-bookworm.md (commit 0b63eeca): the tags' multi-platform index.
    "rabbitmq:4.1.8-management": (
        "sha256:72914305cde66172bd85bc7cbede1edbbd16e5f1076af8b0d9afd3727c1e7980"
    ),
    "postgres:17.11-bookworm": (
        "sha256:639ab7ceb90e13123085b741fb31ef493fba25463002f6da665352e7b534b652"
    ),
}


def test_broker_and_database_images_are_pinned_by_digest(rendered: dict[str, list[Doc]]) -> None:
    """The same official image, by the same digest, in compose, both overlays and CI."""
    pinned = {f"{tag}@{digest}" for tag, digest in OFFICIAL_DIGESTS.items()}
    images = {s["image"] for s in compose_config().get("services", {}).values() if "image" in s}
    for docs in rendered.values():
        images.add(one(docs, "RabbitmqCluster", "rabbitmq")["spec"]["image"])
        for d in docs:
            if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
                spec = d["spec"]["template"]["spec"]
                images |= {c["image"] for c in spec["containers"] + spec.get("initContainers", [])}
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    images |= {s["image"] for s in ci["jobs"]["test"]["services"].values()}
    for image in images:
        if image.split(":")[0] in {"rabbitmq", "postgres"}:
            assert image in pinned, image
    assert pinned <= images


@pytest.mark.integration
def test_compose_programs_with_a_ca_file_mount_it_after_it_is_made() -> None:
    """Whoever reads AMQP_CA_FILE mounts the CA directory (nothing else mounts the volume but
    the broker and amqp-certs), and starts after amqp-certs has made it."""
    services = compose_config("load")["services"]

    def after(name: str, seen: set[str]) -> set[str]:
        for dependency in services[name].get("depends_on", {}):
            if dependency not in seen:
                seen.add(dependency)
                after(dependency, seen)
        return seen

    for name, service in services.items():
        env = service.get("environment") or {}
        mounts = [v for v in service.get("volumes", []) if v.get("source") == "rabbitmq-tls"]
        if name in {"amqp-certs", "rabbitmq"}:
            continue
        if "AMQP_CA_FILE" in env:
            (mount,) = mounts
            assert mount["target"] == str(Path(env["AMQP_CA_FILE"]).parent), name
            assert "amqp-certs" in after(name, set()), name
        else:
            assert not mounts, f"{name} mounts the broker's CA without using it"


# Every other third-party image, by tag and digest, with where the digest was found (the tag's
# multi-platform index, never a per-platform manifest); docs/image-digests.md has the details.
THIRD_PARTY_DIGESTS = {
    # docker-library/repo-info (node:20-slim = 20.19.5 bookworm, index) and 10+ repositories.
    "node:20.19.5-bookworm-slim": (
        "sha256:9e70124bd00f47dd023e349cd587132ae61892acc0e47ed641416c3e18f401c3"
    ),
    "python:3.11.13-slim-bookworm": (
        "sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1"
    ),
    "nginxinc/nginx-unprivileged:1.27.5-alpine": (
        "sha256:65e3e85dbaed8ba248841d9d58a899b6197106c23cb0ff1a132b7bfe0547e4c0"
    ),
    "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z": (
        "sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"
    ),
    "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z": (
        "sha256:a7fe349ef4bd8521fb8497f55c6042871b2ae640607cf99d9bede5e9bdf11727"
    ),
    "prom/prometheus:v3.5.0": (
        "sha256:63805ebb8d2b3920190daf1cb14a60871b16fd38bed42b857a3182bc621f4996"
    ),
    "grafana/grafana:12.1.1": (
        "sha256:a1701c2180249361737a99a01bc770db39381640e4d631825d38ff4535efa47d"
    ),
    "locustio/locust:2.46.6": (
        "sha256:d43616228012a7d79b883e2ecd42f87640469377f2b666c4ab27e5248dfdf35f"
    ),
}
# Tag only, each with its reason (docs/image-digests.md).
TAG_ONLY = {
    "jaegertracing/jaeger:2.10.0": "no digest of 2.10.0 found in two independent sources",
}


def third_party_images(rendered: dict[str, list[Doc]]) -> dict[str, set[str]]:
    """Every image reference outside ours, by where it is used."""
    found: dict[str, set[str]] = {}
    for name, service in compose_config("load").get("services", {}).items():
        if "image" in service and "build" not in service:
            found.setdefault(service["image"], set()).add(f"compose:{name}")
    locust = run_kustomize(ROOT / "k8s" / "locust")
    for where, docs in [*rendered.items(), ("locust", locust)]:
        for d in docs:
            if d["kind"] in {"Deployment", "StatefulSet", "Job"}:
                spec = d["spec"]["template"]["spec"]
                for c in spec["containers"] + spec.get("initContainers", []):
                    found.setdefault(c["image"], set()).add(f"{where}:{c['name']}")
    for dockerfile in (ROOT / "Dockerfile", ROOT / "web" / "Dockerfile"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("FROM "):
                found.setdefault(line.split()[1], set()).add(str(dockerfile.relative_to(ROOT)))
    return {
        image: uses
        for image, uses in found.items()
        if not image.split("/")[-1].startswith("drama-streaming")
        and image.split("@")[0] not in OFFICIAL_DIGESTS
    }


def run_kustomize(directory: Path) -> list[Doc]:
    text = run("kubectl", "kustomize", directory).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def test_every_other_third_party_image_is_pinned_by_its_found_digest(
    rendered: dict[str, list[Doc]],
) -> None:
    """compose, both overlays, the Locust manifests and both Dockerfiles: each third-party
    image is tag@digest with the digest recorded above for that exact tag, or on the short,
    explained tag-only list; every recorded pin is in use."""
    images = third_party_images(rendered)
    pinned = {f"{tag}@{digest}" for tag, digest in THIRD_PARTY_DIGESTS.items()}
    for image, uses in images.items():
        assert image in pinned or image in TAG_ONLY, (image, sorted(uses))
    assert pinned | set(TAG_ONLY) == set(images)
    documented = (ROOT / "docs" / "image-digests.md").read_text()
    for tag, digest in THIRD_PARTY_DIGESTS.items():
        assert f"`{tag}`" in documented, tag
        assert digest in documented, tag
    for tag in TAG_ONLY:
        assert f"`{tag}`" in documented, tag
