"""The generated CRDs accept what `sub apply` accepts and refuse what it refuses.

The same manifests go through the local control plane's parser
(`resources.manifest.parse_object`) and through the CRD schema plus its CEL
rules (crdcheck): the examples must pass both unchanged, and every invalid case
in the table must be refused by both, for the same field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from substratus.errors import ValidationError
from substratus.resources import crd as crdgen
from substratus.resources.kinds import canonical_kind
from substratus.resources.manifest import parse_object
from substratus.resources.schema import KINDS
from tests.kubernetes import crdcheck

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples" / "demo").glob("*.yaml")) + sorted((REPO / "examples" / "gemma").glob("*.yaml"))
CRDS = {c["spec"]["names"]["kind"]: c for c in crdgen.crds()}

BASE: dict[str, dict[str, Any]] = {
    "Dataset": {"apiVersion": "substratus.ai/v1", "kind": "Dataset", "metadata": {"name": "shakespeare"},
                "spec": {"filename": "data.jsonl", "source": {"git": {"url": "https://github.com/o/r", "path": "d"}}}},
    "Model": {"apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "tiny"},
              "spec": {"source": {"modelName": "base"},
                       "training": {"datasetName": "shakespeare", "params": {"epochs": 1, "batchSize": 8}},
                       "compute": {"types": ["GPU", "CPU"]}, "size": {"parameterCount": 4000000}}},
    "ModelServer": {"apiVersion": "substratus.ai/v1", "kind": "ModelServer", "metadata": {"name": "tiny"},
                    "spec": {"modelName": "tiny"}},
    "Notebook": {"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": "nb"},
                 "spec": {"datasetName": "shakespeare", "suspend": True}},
}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `doc` with the dotted `path` set to `value` (`...` deletes it)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


# (case id, kind, path, value, a word both refusals must mention in that field's path)
INVALID = [
    ("name-upper", "Dataset", "metadata.name", "Shakespeare", "name"),
    ("name-dot", "Model", "metadata.name", "tiny.gpt", "name"),
    ("name-underscore", "ModelServer", "metadata.name", "tiny_gpt", "name"),
    ("name-64-chars", "Notebook", "metadata.name", "n" * 64, "name"),
    ("name-trailing-dash", "Dataset", "metadata.name", "data-", "name"),
    ("filename-slash", "Dataset", "spec.filename", "a/b.jsonl", "filename"),
    ("filename-dotdot", "Dataset", "spec.filename", "..", "filename"),
    ("filename-dot", "Dataset", "spec.filename", ".", "filename"),
    ("filename-backslash", "Dataset", "spec.filename", "a\\b", "filename"),
    ("filename-leading-space", "Dataset", "spec.filename", " data.jsonl", "filename"),
    ("filename-empty", "Dataset", "spec.filename", "", "filename"),
    ("filename-missing", "Dataset", "spec.filename", ..., "filename"),
    ("dataset-two-sources", "Dataset", "spec.source", {"git": {"url": "https://h/r"}, "dir": "d"}, "source"),
    ("dataset-no-source", "Dataset", "spec.source", {}, "source"),
    ("dataset-unknown-field", "Dataset", "spec.format", "csv", "format"),
    ("git-path-escapes", "Dataset", "spec.source", {"git": {"url": "https://h/r", "path": "a/../../etc"}}, "path"),
    ("git-url-empty", "Dataset", "spec.source", {"git": {"url": ""}}, "url"),
    ("git-unknown-field", "Dataset", "spec.source", {"git": {"url": "https://h/r", "ref": "main"}}, "ref"),
    ("model-two-sources", "Model", "spec.source", {"modelName": "a", "dir": "d"}, "source"),
    ("model-no-source", "Model", "spec.source", {}, "source"),
    ("model-bad-base-name", "Model", "spec.source", {"modelName": "Tiny_GPT"}, "modelName"),
    ("training-no-dataset", "Model", "spec.training", {"params": {"epochs": 1}}, "datasetName"),
    ("training-bad-dataset-name", "Model", "spec.training", {"datasetName": "a.b"}, "datasetName"),
    ("epochs-zero", "Model", "spec.training.params", {"epochs": 0}, "epochs"),
    ("batch-negative", "Model", "spec.training.params", {"batchSize": -1}, "batchSize"),
    ("data-limit-text", "Model", "spec.training.params", {"dataLimit": "many"}, "dataLimit"),
    ("compute-tpu", "Model", "spec.compute", {"types": ["TPU"]}, "types"),
    ("compute-empty", "Model", "spec.compute", {"types": []}, "types"),
    ("size-zero", "Model", "spec.size", {"parameterCount": 0}, "parameterCount"),
    ("spec-missing", "Model", "spec", ..., "spec"),
    ("server-no-model", "ModelServer", "spec", {}, "modelName"),
    ("server-bad-model", "ModelServer", "spec.modelName", "My Model", "modelName"),
    ("server-extra", "ModelServer", "spec.replicas", 2, "replicas"),
    ("server-address-hostname", "ModelServer", "spec.address", "localhost", "address"),
    ("server-address-bad-ip", "ModelServer", "spec.address", "300.1.2.3", "address"),
    ("server-address-ipv6", "ModelServer", "spec.address", "::1", "address"),  # issue 25 item 6
    ("notebook-both", "Notebook", "spec.modelName", "tiny", "spec"),
    ("notebook-neither", "Notebook", "spec", {"suspend": False}, "spec"),
    ("notebook-suspend-number", "Notebook", "spec.suspend", 7, "suspend"),
    ("git-url-option", "Dataset", "spec.source", {"git": {"url": "--upload-pack=touch /tmp/x;://x"}}, "url"),
    ("git-url-ext-helper", "Dataset", "spec.source", {"git": {"url": "ext::sh"}}, "url"),
    ("git-url-password", "Dataset", "spec.source", {"git": {"url": "https://u:p@h/r"}}, "url"),
    ("git-url-scp-password", "Dataset", "spec.source", {"git": {"url": "u:p@h:r"}}, "url"),
    ("git-url-relative", "Dataset", "spec.source", {"git": {"url": "../r"}}, "url"),
    ("git-url-ftp", "Dataset", "spec.source", {"git": {"url": "ftp://h/r"}}, "url"),
    ("git-branch-option", "Dataset", "spec.source", {"git": {"url": "https://h/r", "branch": "-x"}}, "branch"),
    ("git-branch-dotdot", "Dataset", "spec.source", {"git": {"url": "https://h/r", "branch": "a..b"}}, "branch"),
    ("git-branch-space", "Dataset", "spec.source", {"git": {"url": "https://h/r", "branch": "a b"}}, "branch"),
    ("memory-unit", "ModelServer", "spec.resources", {"limits": {"memory": "4GB"}}, "memory"),
    ("cpu-word", "ModelServer", "spec.resources", {"limits": {"cpu": "two"}}, "cpu"),
    ("requests-over-limits", "ModelServer", "spec.resources", {"limits": {"cpu": 1}, "requests": {"cpu": 2}},
     "cpu"),
    ("unknown-resource", "ModelServer", "spec.resources", {"limits": {"gpu": 1}}, "gpu"),
]
# pydantic's lax mode turns these strings into numbers and booleans; the API server does not.
# The CRD is stricter here, as Kubernetes always is; nothing valid on a cluster is refused locally.
CRD_STRICTER = [
    ("suspend-as-text", "Notebook", "spec.suspend", "yes"),
    ("epochs-as-text", "Model", "spec.training.params", {"epochs": "2"}),
    ("cpu-as-float", "ModelServer", "spec.resources", {"limits": {"cpu": 0.5}}),  # Kubernetes: "500m" or "0.5"
]

VALID_EDGES = [
    ("filename-with-dots", "Dataset", "spec.filename", "data.v2..jsonl"),
    ("name-63-chars", "Notebook", "metadata.name", "n" * 63),
    ("git-path-dotted-name", "Dataset", "spec.source", {"git": {"url": "https://h/r", "path": "a/..b/c"}}),
    ("model-dir-source", "Model", "spec.source", {"dir": "../models/tiny"}),
    ("cpu-only", "Model", "spec.compute", {"types": ["CPU"]}),
    ("server-every-interface", "ModelServer", "spec.address", "0.0.0.0"),
    ("git-ssh-user", "Dataset", "spec.source", {"git": {"url": "ssh://git@h/org/r", "branch": "release/v1"}}),
    ("git-scp", "Dataset", "spec.source", {"git": {"url": "git@github.com:org/r.git"}}),
    ("git-absolute-path", "Dataset", "spec.source", {"git": {"url": "/srv/repos/r"}}),
    ("git-file-url", "Dataset", "spec.source", {"git": {"url": "file:///srv/repos/r"}}),
    ("resources", "Notebook", "spec.resources", {"limits": {"cpu": "500m", "memory": "512Mi"},
                                                 "requests": {"cpu": "250m", "memory": "256Mi"}}),
    ("resources-integers", "ModelServer", "spec.resources", {"limits": {"cpu": 2, "memory": 1073741824}}),
]


def local_problems(doc: dict[str, Any]) -> list[str]:
    try:
        parse_object(doc)
    except ValidationError as err:
        return [f"{path}: {msg}" for path, msg in err.problems]
    return []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_are_valid_custom_resources_unchanged(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert local_problems(doc) == []
        assert crdcheck.problems(CRDS[doc["kind"]], doc) == [], path


@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_what_sub_apply_refuses_the_crd_refuses(case: tuple[str, str, str, Any, str]) -> None:
    _, kind, path, value, word = case
    doc = _set(BASE[kind], path, value)
    local = local_problems(doc)
    remote = crdcheck.problems(CRDS[kind], doc)
    assert local, f"sub apply accepted {doc}"
    assert remote, f"the CRD accepted {doc}"
    assert any(word in p for p in local), local
    assert any(word in p for p in remote), remote


@pytest.mark.parametrize("case", VALID_EDGES, ids=[c[0] for c in VALID_EDGES])
def test_what_sub_apply_accepts_the_crd_accepts(case: tuple[str, str, str, Any]) -> None:
    _, kind, path, value = case
    doc = _set(BASE[kind], path, value)
    assert local_problems(doc) == []
    assert crdcheck.problems(CRDS[kind], doc) == []


@pytest.mark.parametrize("case", CRD_STRICTER, ids=[c[0] for c in CRD_STRICTER])
def test_the_crd_refuses_strings_for_numbers_and_booleans(case: tuple[str, str, str, Any]) -> None:
    _, kind, path, value = case
    doc = _set(BASE[kind], path, value)
    assert local_problems(doc) == []
    assert crdcheck.problems(CRDS[kind], doc)


@pytest.mark.parametrize("kind", list(BASE))
def test_base_documents_are_valid(kind: str) -> None:
    assert local_problems(BASE[kind]) == []
    assert crdcheck.problems(CRDS[kind], BASE[kind]) == []


def test_every_python_validator_has_a_crd_rule() -> None:
    """A validator added to resources/schema.py without a CRD rule fails here."""
    found: dict[str, set[str | None]] = {}
    for cls in {c for k in KINDS.values() for c in _schema_classes(k)}:
        decorators = cls.__pydantic_decorators__
        for dec in decorators.field_validators.values():
            for field in dec.info.fields:
                alias = cls.model_fields[field].alias or field
                found.setdefault(cls.__name__, set()).add(alias)
        if decorators.model_validators:
            found.setdefault(cls.__name__, set()).add(None)
    assert found == crdgen.VALIDATED
    for owner, fields in crdgen.VALIDATED.items():
        if owner == "ObjectMeta":
            continue  # metadata.name: the root CEL rule; namespaces are DNS labels in Kubernetes itself
        for field in fields:
            assert (owner, field) in crdgen.FIELD_RULES, (owner, field)


def _schema_classes(cls: type) -> set[type]:
    from pydantic import BaseModel
    seen: set[type] = set()
    todo = [cls]
    while todo:
        c = todo.pop()
        if c in seen or not (isinstance(c, type) and issubclass(c, BaseModel)):
            continue
        seen.add(c)
        for f in c.model_fields.values():
            todo += _types_in(f.annotation)
    return seen


def _types_in(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", None)
    return [annotation] + [t for a in (args or ()) for t in _types_in(a)]


@pytest.mark.parametrize("kind", list(CRDS))
def test_crd_shape(kind: str) -> None:
    crd = CRDS[kind]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:2] == ["Ready", "Reason"] and names[-1] == "Age"
    for short in crd["spec"]["names"]["shortNames"]:
        assert canonical_kind(short) == kind  # `kubectl get server` and `sub get server` agree
    schema = version["schema"]["openAPIV3Schema"]
    _assert_structural(schema, "openAPIV3Schema")


def test_modelserver_short_name_is_server() -> None:
    assert "server" in CRDS["ModelServer"]["spec"]["names"]["shortNames"]


def test_defaults_match_the_pydantic_defaults() -> None:
    spec = CRDS["Model"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    params = spec["properties"]["training"]["properties"]["params"]
    assert params["default"] == {"epochs": 3, "dataLimit": 1_000_000_000_000, "batchSize": 1}
    assert spec["properties"]["compute"]["default"] == {"types": ["CPU"]}
    nb = CRDS["Notebook"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert nb["properties"]["suspend"]["default"] is False


def _assert_structural(node: Any, where: str) -> None:
    """Every node has a type (or is a pure value validation); no $ref, no nulls, no additionalProperties: false."""
    assert isinstance(node, dict)
    assert "$ref" not in node, where
    int_or_string = node.get("x-kubernetes-int-or-string") is True  # a quantity, as Kubernetes writes one
    for option in node.get("anyOf", []):  # only value validations may sit under anyOf
        allowed = {"format", "pattern", "enum", "minimum", "maximum"} | ({"type"} if int_or_string else set())
        assert set(option) <= allowed, where
    assert node.get("additionalProperties") is not False, where
    assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") or int_or_string, where
    assert not (int_or_string and node.get("x-kubernetes-preserve-unknown-fields")), where
    for key, sub in node.get("properties", {}).items():
        _assert_structural(sub, f"{where}.{key}")
    if "items" in node:
        _assert_structural(node["items"], f"{where}[]")
