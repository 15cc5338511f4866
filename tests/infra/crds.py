"""Custom resources validated as the API server validates them: against the structural
OpenAPI v3 schema of their CustomResourceDefinition (``spec.versions[].schema.openAPIV3Schema``).

The CRDs are the operators' upstream files: ``../shared/crds`` beside the clone (CI lays
``shared/`` there), plus those the project copies into ``tests/infra/crds`` with their source and
version (README.md there). A kind with no CRD in either place is an error, never a pass.

What the API server enforces and this reproduces with ``jsonschema``:
- types, enums, required fields, formats it knows, patterns, bounds, ``oneOf``/``anyOf``/``not``;
- ``x-kubernetes-int-or-string: true``: an integer or a string;
- ``x-kubernetes-preserve-unknown-fields: true``: keys the schema does not list are kept;
- everywhere else an object with ``properties`` refuses the keys it does not list (the API server
  prunes them, and ``kubectl apply`` with the default strict field validation refuses them);
- ``metadata`` is the API server's own: only ``name``/``namespace``/labels/annotations are
  checked here, as kubernetes-validate does for core kinds.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema

from tests.infra.conftest import ROOT, load_all

Doc = dict[str, Any]
Schema = dict[str, Any]

SHARED_CRDS = ROOT.parent / "shared" / "crds"
PROJECT_CRDS = Path(__file__).resolve().parent / "crds"
CRD_DIRS = (SHARED_CRDS, PROJECT_CRDS)

# The object metadata every kind shares: the API server validates it, not the CRD's schema.
_METADATA: Schema = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


class MissingCrd(LookupError):
    """No CustomResourceDefinition known for an apiVersion and kind."""


def crd_documents(directories: Iterable[Path] = CRD_DIRS) -> Iterator[Doc]:
    for directory in directories:
        for path in sorted(directory.glob("*.yaml")):
            for doc in load_all(path.read_text()):
                if doc.get("kind") == "CustomResourceDefinition":
                    yield doc


@functools.cache
def schemas() -> dict[tuple[str, str], Schema]:
    """(apiVersion, kind) -> the structural schema, for every served version of every CRD."""
    assert SHARED_CRDS.is_dir(), f"{SHARED_CRDS} is missing: CI lays shared/ beside the clone"
    out: dict[tuple[str, str], Schema] = {}
    for crd in crd_documents():
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema is None:
                continue
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            out[key] = schema
    return out


def strict(schema: Schema, *, preserve: bool = False) -> Schema:
    """``schema`` as JSON Schema with the API server's rules for unknown fields and the
    ``x-kubernetes-*`` extensions made explicit."""
    out: Schema = {}
    preserve = preserve or schema.get("x-kubernetes-preserve-unknown-fields") is True
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties", "not"} and isinstance(value, dict):
            out[key] = strict(value)
        elif key in {"allOf", "anyOf", "oneOf"}:
            # Value validations only (structural schemas keep types out of these).
            out[key] = [strict(sub, preserve=True) for sub in value]
        elif key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not preserve
        and schema.get("type", "object") == "object"
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-embedded-resource") is True:
        # An embedded object (a PodTemplate's metadata, ...) may carry these without listing them.
        props = out.setdefault("properties", {})
        for name in ("apiVersion", "kind"):
            props.setdefault(name, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    nullable = out.pop("nullable", False)
    if nullable is True and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = schemas().get((api_version, kind))
    if schema is None:
        raise MissingCrd(f"no CRD for {api_version} {kind} in {', '.join(map(str, CRD_DIRS))}")
    top = strict(copy.deepcopy(schema))
    properties = top.setdefault("properties", {})
    properties["metadata"] = _METADATA
    properties["apiVersion"] = {"type": "string", "enum": [api_version]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    top.setdefault("required", [])
    for key in ("apiVersion", "kind", "metadata"):
        if key not in top["required"]:
            top["required"].append(key)
    top["additionalProperties"] = False
    cls = jsonschema.validators.validator_for(top, default=jsonschema.Draft4Validator)
    return cls(top, format_checker=cls.FORMAT_CHECKER)


def is_custom(doc: Doc) -> bool:
    """Not a built-in kind: its group has a dot (core groups like apps, batch have none, and
    the built-in dotted groups are Kubernetes' own)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def errors(doc: Doc) -> list[str]:
    """What the API server would refuse in ``doc``, as ``path: message`` lines."""
    validator = _validator(doc["apiVersion"], doc["kind"])
    found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
