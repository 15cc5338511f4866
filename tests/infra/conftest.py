"""Helpers for the offline checks of the deploy files: nothing here needs a cluster or a cloud."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

Doc = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
K8S = ROOT / "k8s"
OVERLAYS = ("local", "eks")
NAMESPACE = "drama-streaming"
EKS_TERRAFORM_ENV = ROOT / "k8s" / "overlays" / "eks" / "terraform.env"


def load_all(text: str) -> list[Doc]:
    """The documents of a YAML stream, empty ones left out, parsed by libyaml where PyYAML has it:
    the CRDs (2.3 MB) and the rendered overlays took 3 s a process with the Python parser."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a checker; the test fails with its output when it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        command = " ".join(map(str, args))
        pytest.fail(f"{command} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def eks_terraform_env() -> dict[str, str]:
    """The committed k8s/overlays/eks/terraform.env (Terraform's outputs the eks overlay reads)."""
    lines = EKS_TERRAFORM_ENV.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip())


def guide_helm_values() -> dict[str, Any]:
    """The Helm values docs/deploy-kubernetes.md passes on stdin (`-f - <<'EOF_VALUES'`), by
    the release they are installed as."""
    text = (ROOT / "docs" / "deploy-kubernetes.md").read_text()
    out: dict[str, Any] = {}
    for before, after in itertools.pairwise(text.split("<<'EOF_VALUES'\n")):
        (release,) = re.findall(r"helm install ([\w-]+)", before)[-1:]
        assert release not in out, f"the guide passes values to {release} twice"
        out[release] = yaml.safe_load(after.split("\nEOF_VALUES\n")[0])
    return out


@pytest.fixture(scope="session")
def checkov() -> Path:
    """checkov from its own venv (make tools); missing means `make test` was bypassed: fail."""
    path = TOOLS / "checkov" / "bin" / "checkov"
    assert path.exists(), "checkov is missing: run `make tools`"
    return path


# --- rendering ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Doc]]:
    """Both overlays rendered once by kubectl's kustomize; a render error fails with its output."""
    out: dict[str, list[Doc]] = {}
    for overlay in OVERLAYS:
        text = run("kubectl", "kustomize", K8S / "overlays" / overlay).stdout
        out[overlay] = load_all(text)
    return out


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def docs(rendered: dict[str, list[Doc]], overlay: str) -> list[Doc]:
    return rendered[overlay]


# What Terraform hands the eks overlay (outputs.tf's heredoc), in its order; the deploy workflow
# writes the same keys and the overlay reads them.
EKS_OVERLAY_KEYS = (
    "STREAM_SERVICE_ROLE_ARN",
    "MEDIA_BUCKET",
    "AWS_REGION",
    "IMAGE",
    "WEB_IMAGE",
    "CERTIFICATE_ARN",
    "DB_HOST",
    "DB_MASTER_SECRET_ARN",
    "DRAMA_DB_SECRET_ARN",
    "EPISODE_DB_SECRET_ARN",
    "DRAMA_SERVICE_ROLE_ARN",
    "EPISODE_SERVICE_ROLE_ARN",
    "SEED_ROLE_ARN",
    "VPC_CIDR",
)
