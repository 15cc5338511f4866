"""Offline checks of terraform/: format, structure, and checkov.

Nothing here can run `terraform init` (no registry), so the structure is read with python-hcl2
and the few values that matter are resolved by hand: module arguments, locals, variable defaults.
The IRSA trust and the overlay wiring are checked against the rendered eks overlay, so a rename
on either side fails here rather than as an AccessDenied on EKS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2.utils import SerializationOptions

from .conftest import ROOT, run

TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
PROD = TERRAFORM / "envs" / "prod"
EKS_OVERLAY = ROOT / "k8s" / "overlays" / "eks"

# Registry modules and the major version each must stay on (the current ones).
REGISTRY_MAJORS = {"terraform-aws-modules/eks/aws": 21, "terraform-aws-modules/vpc/aws": 6}
PROVIDER_MAJORS = {"aws": 6, "helm": 3}
ALL_LOG_TYPES = {"api", "audit", "authenticator", "controllerManager", "scheduler"}
# terraform.env key -> the root output whose value the line carries.
OVERLAY_ENV_OUTPUTS = {
    "STREAM_SERVICE_ROLE_ARN": "stream_service_role_arn",
    "MEDIA_BUCKET": "media_bucket_name",
    "AWS_REGION": "region",
    "IMAGE": "ecr_repository_url",
}

Doc = dict[str, Any]


@cache
def load(directory: Path) -> Doc:
    """Every .tf file of a directory merged into one document, quotes stripped.

    python-hcl2 keeps the HCL quotes around strings by default ('"x"'); stripping them makes
    literals plain and leaves interpolations as "${...}" text.
    """
    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    merged: Doc = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            doc = hcl2.load(handle, serialization_options=options)
        for key, blocks in doc.items():
            merged.setdefault(key, []).extend(blocks)
    return merged


def block(doc: Doc, kind: str, *labels: str) -> Doc:
    """The one block `kind "label"...` of a document."""
    found = [b for entry in doc.get(kind, []) if (b := _descend(entry, labels)) is not None]
    assert len(found) == 1, f"expected one {kind} {' '.join(labels)}, found {len(found)}"
    return found[0]


def blocks(doc: Doc, kind: str, type_label: str) -> dict[str, Doc]:
    """All blocks `kind "type_label" "name"`, by name (resources and data sources)."""
    out: dict[str, Doc] = {}
    for entry in doc.get(kind, []):
        out.update(entry.get(type_label, {}))
    return out


def _descend(entry: Doc, labels: tuple[str, ...]) -> Doc | None:
    for label in labels:
        if label not in entry:
            return None
        entry = entry[label]
    return entry


def variable_default(directory: Path, name: str) -> Any:
    return block(load(directory), "variable", name).get("default")


def resolve(value: str, directory: Path, call: Doc | None = None) -> str:
    """Replace ${var.x} and ${local.x} in a string with their literal values.

    var.x comes from the module call's argument when given (itself resolved in the caller's
    directory), else from the variable's default; local.x from the directory's locals.
    """

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "var":
            if call is not None and name in call:
                return resolve(str(call[name]), PROD)
            return str(variable_default(directory, name))
        locals_ = {k: v for entry in load(directory).get("locals", []) for k, v in entry.items()}
        return resolve(str(locals_[name]), directory)

    return re.sub(r"\$\{(var|local)\.(\w+)\}", substitute, value)


def module_call(name: str) -> Doc:
    return block(load(PROD), "module", name)


def policy_statements(directory: Path, document: str) -> list[Doc]:
    statements: list[Doc] = blocks(load(directory), "data", "aws_iam_policy_document")[document][
        "statement"
    ]
    return statements


def conditions(statement: Doc) -> dict[str, Doc]:
    """A statement's conditions by the suffix of their key (":sub", ":aud")."""
    return {c["variable"].rsplit(":", 1)[-1]: c for c in statement["condition"]}


@cache
def rendered_eks_overlay() -> tuple[Doc, ...]:
    proc = run("kubectl", "kustomize", EKS_OVERLAY)
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def rendered(kind: str, name: str) -> Doc:
    found = [
        d for d in rendered_eks_overlay() if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"the eks overlay renders {len(found)} {kind} {name}"
    return found[0]


def committed_overlay_env() -> dict[str, str]:
    lines = (EKS_OVERLAY / "terraform.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip())


def overlay_env_template() -> dict[str, str]:
    """The KEY=${expression} lines of the eks_overlay_env output (heredoc markers dropped)."""
    text = block(load(PROD), "output", "eks_overlay_env")["value"]
    lines = [line.strip() for line in text.splitlines()[1:-1]]
    return dict(line.split("=", 1) for line in lines if line)


# Format -------------------------------------------------------------------------------------


def test_terraform_is_formatted() -> None:
    """`terraform fmt` needs no providers, so it runs wherever terraform is installed.

    CI installs terraform (hashicorp/setup-terraform), so there a missing binary is an error;
    elsewhere this one check is skipped with the reason.
    """
    terraform = shutil.which("terraform")
    if terraform is None:
        if os.environ.get("CI"):
            pytest.fail("terraform is not installed on CI: the workflow must set it up")
        pytest.skip("terraform is not installed here (CI installs it)")
    run(terraform, "fmt", "-check", "-recursive", "-diff", TERRAFORM)


# IRSA for stream-service ---------------------------------------------------------------------


def test_irsa_trust_subject_is_the_rendered_stream_service_account() -> None:
    """The role's :sub is exactly the ServiceAccount stream-service runs as on EKS.

    Both sides are read, not assumed: the subject from the Terraform trust (variables resolved
    through the root's module call), the namespace and ServiceAccount from the rendered overlay.
    """
    deployment = rendered("Deployment", "stream-service")
    namespace = deployment["metadata"]["namespace"]
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]

    (trust,) = policy_statements(MODULES / "irsa-stream", "trust")
    sub = conditions(trust)["sub"]
    assert sub["test"] == "StringEquals"
    (subject,) = sub["values"]
    resolved = resolve(subject, MODULES / "irsa-stream", module_call("irsa_stream"))
    assert resolved == f"system:serviceaccount:{namespace}:{service_account}"


def test_irsa_trust_is_pinned_on_audience_and_provider() -> None:
    (trust,) = policy_statements(MODULES / "irsa-stream", "trust")
    assert trust["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    assert trust["principals"] == [
        {"type": "Federated", "identifiers": ["${var.oidc_provider_arn}"]}
    ]
    by_key = conditions(trust)
    assert set(by_key) == {"sub", "aud"}
    assert by_key["aud"]["test"] == "StringEquals"
    assert by_key["aud"]["values"] == ["sts.amazonaws.com"]
    for condition in by_key.values():
        assert condition["variable"].startswith("${var.oidc_provider}:")
    call = module_call("irsa_stream")
    assert call["oidc_provider_arn"] == "${module.cluster.oidc_provider_arn}"
    assert call["oidc_provider"] == "${module.cluster.oidc_provider}"


def test_stream_service_may_only_read_media_objects() -> None:
    """One statement, s3:GetObject, on the media bucket's objects: nothing else is granted."""
    directory = MODULES / "irsa-stream"
    (statement,) = policy_statements(directory, "read_media")
    assert statement.get("effect", "Allow") == "Allow"
    assert statement["actions"] == ["s3:GetObject"]
    assert statement["resources"] == ["${var.bucket_arn}/*"]
    assert "not_actions" not in statement
    assert "not_resources" not in statement
    assert module_call("irsa_stream")["bucket_arn"] == "${module.media_bucket.bucket_arn}"
    assert block(load(MODULES / "media-bucket"), "output", "bucket_arn")["value"] == (
        "${aws_s3_bucket.media.arn}"
    )

    doc = load(directory)
    (inline,) = blocks(doc, "resource", "aws_iam_role_policy").values()
    assert inline["policy"] == "${data.aws_iam_policy_document.read_media.json}"
    assert not blocks(doc, "resource", "aws_iam_role_policy_attachment")
    (role,) = blocks(doc, "resource", "aws_iam_role").values()
    assert "managed_policy_arns" not in role


# Outputs wired into the eks overlay ----------------------------------------------------------


def test_overlay_env_lines_are_the_named_outputs() -> None:
    """Each terraform.env line carries the output of the contract's name, nothing else."""
    template = overlay_env_template()
    assert list(template) == list(OVERLAY_ENV_OUTPUTS)
    doc = load(PROD)
    for key, output in OVERLAY_ENV_OUTPUTS.items():
        value = block(doc, "output", output)["value"]
        expected = f"{value}:${{var.image_tag}}" if key == "IMAGE" else value
        assert template[key] == expected, key


def test_overlay_env_keys_match_the_committed_terraform_env() -> None:
    """`terraform output -raw eks_overlay_env > k8s/overlays/eks/terraform.env` fits the file."""
    assert list(committed_overlay_env()) == list(overlay_env_template())


def test_role_arn_annotation_comes_from_the_stream_service_role_arn_line() -> None:
    """The overlay puts terraform.env's STREAM_SERVICE_ROLE_ARN on stream-service's account."""
    deployment = rendered("Deployment", "stream-service")
    name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    account = rendered("ServiceAccount", name)
    annotation = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert annotation == committed_overlay_env()["STREAM_SERVICE_ROLE_ARN"]
    assert (
        overlay_env_template()["STREAM_SERVICE_ROLE_ARN"]
        == (block(load(PROD), "output", "stream_service_role_arn")["value"])
    )


# Media bucket --------------------------------------------------------------------------------


def test_media_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    doc = load(MODULES / "media-bucket")
    (access,) = blocks(doc, "resource", "aws_s3_bucket_public_access_block").values()
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert access[setting] is True, setting

    (sse,) = blocks(doc, "resource", "aws_s3_bucket_server_side_encryption_configuration").values()
    (default,) = sse["rule"][0]["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"}

    (versioning,) = blocks(doc, "resource", "aws_s3_bucket_versioning").values()
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"

    (ownership,) = blocks(doc, "resource", "aws_s3_bucket_ownership_controls").values()
    assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"

    (deny,) = policy_statements(MODULES / "media-bucket", "tls_only")
    assert deny["effect"] == "Deny"
    assert deny["condition"] == [
        {"test": "Bool", "variable": "aws:SecureTransport", "values": ["false"]}
    ]


# EKS cluster ---------------------------------------------------------------------------------


def test_cluster_endpoint_is_not_open_to_the_internet_by_default() -> None:
    eks = block(load(MODULES / "cluster"), "module", "eks")
    assert eks["endpoint_private_access"] is True
    assert eks["endpoint_public_access_cidrs"] == "${var.endpoint_public_access_cidrs}"
    assert module_call("cluster")["endpoint_public_access_cidrs"] == (
        "${var.cluster_endpoint_public_access_cidrs}"
    )
    defaults = (
        variable_default(MODULES / "cluster", "endpoint_public_access_cidrs"),
        variable_default(PROD, "cluster_endpoint_public_access_cidrs"),
    )
    assert defaults == ([], [])
    validation = block(load(MODULES / "cluster"), "variable", "endpoint_public_access_cidrs")
    assert "0.0.0.0/0" in validation["validation"][0]["condition"]
    assert "0.0.0.0/0" not in (PROD / "terraform.tfvars.example").read_text()


def test_cluster_logs_everything_and_encrypts_secrets() -> None:
    eks = block(load(MODULES / "cluster"), "module", "eks")
    assert set(eks["enabled_log_types"]) == ALL_LOG_TYPES
    assert eks["create_kms_key"] is True
    assert eks["encryption_config"]["resources"] == ["secrets"]
    assert eks["enable_irsa"] is True


def test_nodes_accept_istiod_webhook_calls_from_the_control_plane() -> None:
    eks = block(load(MODULES / "cluster"), "module", "eks")
    rules = eks["node_security_group_additional_rules"]
    webhook = [r for r in rules.values() if r.get("from_port") == 15017]
    assert webhook, "no node rule for istiod's webhook port 15017"
    (rule,) = webhook
    assert rule["to_port"] == 15017
    assert rule["type"] == "ingress"
    assert rule["source_cluster_security_group"] is True


def test_registry_modules_and_providers_are_pinned_to_current_majors() -> None:
    seen = set()
    for directory in [PROD, *sorted(p for p in MODULES.iterdir() if p.is_dir())]:
        doc = load(directory)
        for entry in doc.get("module", []):
            for name, call in entry.items():
                source = call["source"]
                if source.startswith("../"):
                    continue
                assert source in REGISTRY_MAJORS, f"{directory.name}: unexpected module {source}"
                assert call["version"] == f"~> {REGISTRY_MAJORS[source]}.0", name
                seen.add(source)
        for terraform in doc.get("terraform", []):
            for providers in terraform.get("required_providers", []):
                for name, spec in providers.items():
                    assert spec["version"].startswith("~> "), f"{directory.name}: {name}"
                    if name in PROVIDER_MAJORS:
                        assert spec["version"].startswith(f"~> {PROVIDER_MAJORS[name]}."), name
    assert seen == set(REGISTRY_MAJORS)


# Add-ons -------------------------------------------------------------------------------------


def test_helm_releases_have_pinned_chart_versions() -> None:
    directory = MODULES / "addons"
    releases = blocks(load(directory), "resource", "helm_release")
    versions = variable_default(directory, "chart_versions")
    assert set(releases) >= {
        "aws_load_balancer_controller",
        "istio_base",
        "istiod",
        "istio_ingressgateway",
        "kube_prometheus_stack",
        "keda",
        "rabbitmq_cluster_operator",
    }
    for name, release in releases.items():
        match = re.fullmatch(r"\$\{var\.chart_versions\.(\w+)\}", release["version"])
        assert match, f"{name}: version must come from var.chart_versions"
        assert re.fullmatch(r"\d+\.\d+\.\d+", versions[match.group(1)]), name


def test_mesh_traces_go_to_the_jaeger_service_the_overlay_renders() -> None:
    """istiod's jaeger-otel provider points at a Service and port the eks overlay really has."""
    directory = MODULES / "addons"
    text = (directory / "main.tf").read_text()
    assert re.search(r'name\s*=\s*"jaeger-otel"', text)
    host = variable_default(directory, "jaeger_otlp_service")
    port = variable_default(directory, "jaeger_otlp_port")
    name, namespace = host.split(".")[:2]
    service = rendered("Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert port in [p["port"] for p in service["spec"]["ports"]]


def test_prometheus_selects_monitors_without_its_release_label() -> None:
    text = (MODULES / "addons" / "main.tf").read_text()
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        setting = f"{kind}SelectorNilUsesHelmValues"
        assert re.search(rf"{setting}\s*=\s*false", text), setting


def test_alb_controller_policy_is_the_shipped_json() -> None:
    directory = MODULES / "alb-controller"
    policy = json.loads((directory / "iam_policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in _as_list(s["Action"])}
    assert {"elasticloadbalancing:CreateLoadBalancer", "ec2:CreateSecurityGroup"} <= actions
    (resource,) = blocks(load(directory), "resource", "aws_iam_policy").values()
    assert resource["policy"] == '${file("${path.module}/iam_policy.json")}'


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# Amazon MQ -----------------------------------------------------------------------------------


def test_amazon_mq_is_optional_private_and_tls_only() -> None:
    call = module_call("amazon_mq")
    assert call["count"] == "${var.amazon_mq_enabled ? 1 : 0}"
    assert variable_default(PROD, "amazon_mq_enabled") is False

    doc = load(MODULES / "amazon-mq")
    (broker,) = blocks(doc, "resource", "aws_mq_broker").values()
    assert broker["engine_type"] == "RabbitMQ"
    assert broker["publicly_accessible"] is False
    assert broker["subnet_ids"] == "${var.subnet_ids}"
    assert call["subnet_ids"] == "${module.network.private_subnet_ids}"

    (ingress,) = blocks(doc, "resource", "aws_vpc_security_group_ingress_rule").values()
    assert (ingress["from_port"], ingress["to_port"], ingress["ip_protocol"]) == (5671, 5671, "tcp")
    assert ingress["referenced_security_group_id"] == "${var.client_security_group_id}"
    assert "cidr_ipv4" not in ingress
    assert not blocks(doc, "resource", "aws_security_group_rule")
    for group in blocks(doc, "resource", "aws_security_group").values():
        assert "ingress" not in group

    (secret,) = blocks(doc, "resource", "aws_secretsmanager_secret_version").values()
    assert "random_password.admin.result" in secret["secret_string"]
    assert "amqps://" in secret["secret_string"]
    for tf in (MODULES / "amazon-mq").glob("*.tf"):
        for output in load(tf.parent).get("output", []):
            for body in output.values():
                assert "random_password" not in str(body["value"])


# checkov -------------------------------------------------------------------------------------


def test_checkov_finds_nothing_unexplained(checkov: Path) -> None:
    """Zero failed checks; every skip carries its reason (inline checkov:skip=ID:reason).

    --soft-fail keeps the exit status 0 so that the assertion, not the whole JSON report, says
    what failed. Registry modules are not downloaded: their inputs are asserted above instead.
    """
    proc = run(
        checkov,
        *("-d", TERRAFORM, "--framework", "terraform", "--skip-download"),
        *("--soft-fail", "-o", "json"),
    )
    results = json.loads(proc.stdout)["results"]
    failed = [(c["check_id"], c["file_path"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{skipped['check_id']} in {skipped['file_path']} has no reason"
