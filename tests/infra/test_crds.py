"""Every custom resource of both rendered overlays is valid for the CRD the API server applies
(tests/infra/crds.py): the check that a hand-written field list could not be. Built-in kinds are
test_k8s.py's (kubernetes-validate --strict)."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from tests.infra import crds
from tests.infra.conftest import Doc
from tests.infra.test_k8s import one


def test_every_custom_resource_is_valid_for_its_crd(docs: list[Doc]) -> None:
    custom = [d for d in docs if crds.is_custom(d)]
    problems = []
    for doc in custom:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            problems += [f"{name}: {e}" for e in crds.errors(doc)]
        except crds.MissingCrd as exc:
            problems.append(f"{name}: {exc}")
    assert not problems, "\n".join(problems)
    kinds = {d["kind"] for d in custom}
    assert {"RabbitmqCluster", "User", "Permission", "ScaledObject", "Certificate"} <= kinds


def test_every_kind_is_either_built_in_or_has_a_crd(docs: list[Doc]) -> None:
    """No object escapes both checks: a custom kind without a CRD is an error above, and what
    is_custom() calls built-in is a group kubernetes-validate knows (test_k8s.py)."""
    groups = {d["apiVersion"].rpartition("/")[0] for d in docs if not crds.is_custom(d)}
    assert groups <= {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}, groups


def rabbitmq_cluster(docs: list[Doc]) -> Doc:
    return copy.deepcopy(one(docs, "RabbitmqCluster", "rabbitmq"))


def test_check_refuses_a_missing_required_field(docs: list[Doc]) -> None:
    """The defect that kept the broker from starting: an override pod spec without containers."""
    doc = rabbitmq_cluster(docs)
    del doc["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]["containers"]
    (error,) = crds.errors(doc)
    assert error == (
        "spec.override.statefulSet.spec.template.spec: 'containers' is a required property"
    )


def test_check_refuses_an_unknown_field(docs: list[Doc]) -> None:
    doc = rabbitmq_cluster(docs)
    doc["spec"]["persistence"]["storageSize"] = "10Gi"
    (error,) = crds.errors(doc)
    assert error.startswith("spec.persistence: Additional properties are not allowed")
    assert "'storageSize'" in error


def test_check_refuses_a_wrong_type_and_a_value_outside_the_enum(docs: list[Doc]) -> None:
    scaled = copy.deepcopy(one(docs, "ScaledObject", "episode-service"))
    scaled["spec"]["maxReplicaCount"] = "ten"
    assert crds.errors(scaled) == ["spec.maxReplicaCount: 'ten' is not of type 'integer'"]
    peer = copy.deepcopy(one(docs, "PeerAuthentication", "default"))
    peer["spec"]["mtls"]["mode"] = "STRICTLY"
    (error,) = crds.errors(peer)
    assert error.startswith("spec.mtls.mode: 'STRICTLY' is not one of ['UNSET', ")


def test_strict_schema_honours_the_kubernetes_extensions() -> None:
    """Unknown keys are refused where properties are listed, kept under
    x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string takes both types."""
    schema = {
        "type": "object",
        "properties": {
            "port": {"x-kubernetes-int-or-string": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "typed": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    validator = jsonschema.Draft4Validator(crds.strict(schema))
    assert validator.is_valid({"port": 5671, "free": {"any": {"thing": 1}}})
    assert validator.is_valid({"port": "amqps"})
    assert not validator.is_valid({"port": 1.5})
    assert not validator.is_valid({"typed": {"a": "x", "b": "y"}})
    assert not validator.is_valid({"other": 1})


def test_a_custom_kind_without_a_crd_fails() -> None:
    doc = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {},
    }
    assert crds.is_custom(doc)
    with pytest.raises(crds.MissingCrd, match=r"no CRD for example\.com/v1 Widget"):
        crds.errors(doc)
