"""CustomResourceDefinitions for substratus.ai/v1, generated from `resources.schema`.

One source of truth: the pydantic models the local control plane validates
with are turned into structural `openAPIV3Schema`s here, so `kubectl apply`
of a manifest is refused for the same reasons `sub apply` refuses it.
pydantic's JSON schema carries the types, enums, bounds and defaults; the
rules that live in Python validators (DNS-1123 names, plain file names,
exactly-one-of sources, no `..` in git paths) are restated below as OpenAPI
patterns and CEL `x-kubernetes-validations`, keyed by the schema class and
field they belong to. `tests/kubernetes/test_crd.py` keeps the two honest:
every validator in `schema.py` must have a rule here, and a table of invalid
manifests must be refused by both.

Called by `sub kube install` (runtimes.kubernetes.install) and the tests.
Pure: no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from substratus.resources.schema import API_VERSION, DNS1123_LABEL, KINDS
from substratus.resources.status import Status

GROUP, VERSION = API_VERSION.split("/")
DNS_LABEL_PATTERN = DNS1123_LABEL.pattern
# RE2 (Kubernetes' regexp flavour): no '/' or '\', no whitespace at either end.
FILENAME_PATTERN = r"^[^/\\\s]([^/\\]*[^/\\\s])?$"

# resources.giturl, restated for the API server (RE2, no lookarounds): plain transports only, no
# user:password@, no leading '-'; the CEL rules below add the remote-helper and password forms.
GIT_URL_PATTERN = (r"^((https?|git)://[A-Za-z0-9\[][^@/\s]*(/\S*)?"
                   r"|ssh://([A-Za-z0-9._~][A-Za-z0-9._~-]*@)?[A-Za-z0-9\[][^@/\s]*(/\S*)?"
                   r"|file://(localhost)?/\S*|/.*"
                   r"|([A-Za-z0-9._~][A-Za-z0-9._~-]*@)?[A-Za-z0-9][A-Za-z0-9.-]*:[^-\s]\S*)$")
# A Kubernetes quantity, as Kubernetes' own CRDs write it (resources.limits).
QUANTITY_PATTERN = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
                    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
NO_CONTROL_CHARS = r"^[^\x00-\x1f\x7f]*$"

_PLURALS = {"Dataset": "datasets", "Model": "models", "ModelServer": "modelservers", "Notebook": "notebooks"}
# `kubectl get server` works as the issue asks; each short name is also one `sub` accepts
# (resources.kinds), which the tests check.
_SHORT_NAMES = {"Dataset": ["ds"], "Model": ["mo"], "ModelServer": ["server", "svr"], "Notebook": ["nb"]}


def _dns_label(what: str) -> dict[str, Any]:
    return {"pattern": DNS_LABEL_PATTERN, "maxLength": 63, "minLength": 1,
            "description": f"{what}: a DNS-1123 label (lower-case letters, digits and '-')"}


def _exactly_one(fields: list[str]) -> dict[str, Any]:
    quoted = [f"'{f}'" for f in fields]
    listed = (", ".join(quoted[:-1]) + " or " + quoted[-1]) if len(quoted) > 2 else " or ".join(quoted)
    checks = ", ".join(f"has(self.{f})" for f in fields)
    return {"rule": f"[{checks}].filter(x, x).size() == 1", "message": f"set exactly one of {listed}"}


# (schema class, field) -> extra keywords for that property; (schema class, None) -> for the object.
# Each entry restates one Python validator of resources/schema.py (see the module docstring).
FIELD_RULES: dict[tuple[str, str | None], dict[str, Any]] = {
    ("DatasetSpec", "filename"): {
        "pattern": FILENAME_PATTERN, "maxLength": 253,
        "x-kubernetes-validations": [{"rule": "self != '.' && self != '..'",
                                      "message": "'.' and '..' are not file names: give one such as 'data.jsonl'"}],
        "description": "a plain file name such as 'data.jsonl': no '/', no '..'",
    },
    ("DatasetSource", None): {"x-kubernetes-validations": [_exactly_one(["git", "dir"])]},
    ("ModelSource", None): {"x-kubernetes-validations": [_exactly_one(["git", "dir", "modelName"])]},
    ("NotebookSpec", None): {"x-kubernetes-validations": [_exactly_one(["modelName", "datasetName"])]},
    ("ModelSource", "modelName"): _dns_label("the base Model's name"),
    ("Training", "datasetName"): _dns_label("the Dataset to train on"),
    ("ModelServerSpec", "modelName"): _dns_label("the Model to serve"),
    ("NotebookSpec", "modelName"): _dns_label("the Model to open"),
    ("NotebookSpec", "datasetName"): _dns_label("the Dataset to open"),
    ("GitSource", "path"): {
        "maxLength": 1024, "pattern": NO_CONTROL_CHARS,
        "x-kubernetes-validations": [{"rule": "!self.matches('(^|/)[.][.](/|$)')",
                                      "message": "must stay inside the repository: '..' is not allowed"}],
    },
    ("ModelServerSpec", "address"): {
        "maxLength": 15, "format": "ipv4",
        "description": "an IPv4 address (the local control plane publishes the port there; a cluster "
                       "serves through a Service and ignores it)",
    },
    ("GitSource", "url"): {
        "maxLength": 2048, "pattern": GIT_URL_PATTERN,
        "description": "https://, http://, ssh://, git://, file://, git@host:path or an absolute path; no "
                       "password or token in it",
        "x-kubernetes-validations": [
            {"rule": "!self.startsWith('-')", "message": "must not start with '-' (git would read an option)"},
            {"rule": "!self.matches('^[A-Za-z0-9+.-]+::')", "message": "remote helpers (ext::, fd::) are not allowed"},
            {"rule": "!self.matches('^[^/@]*:[^/@]*@')",
             "message": "no user:password@ in the URL: use a credential helper or an ssh key"},
            {"rule": "!self.contains('://') || self.matches('^(https?|git)://[^@/]*(/.*)?$') || "
                     "self.matches('^ssh://([^:@/]+@)?[^@/]*(/.*)?$') || self.matches('^file://')",
             "message": "a URL is https://, http://, git:// (no user, no password), ssh:// (a user, no "
                        "password) or file://"}],
    },
    ("GitSource", "branch"): {
        "maxLength": 255, "pattern": r"^[^\x00-\x20\x7f~^:?*\[\\]*$",
        "x-kubernetes-validations": [{
            "rule": "!self.startsWith('-') && !self.startsWith('.') && !self.startsWith('/') && "
                    "!self.contains('..') && !self.contains('@{') && !self.contains('//') && "
                    "!self.contains('/.') && !self.endsWith('/') && !self.endsWith('.') && "
                    "!self.endsWith('.lock') && self != '@'",
            "message": "not a valid branch name (git check-ref-format)"}],
    },
    ("ResourceList", "cpu"): {"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                              "x-kubernetes-int-or-string": True},
    ("ResourceList", "memory"): {"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                                 "x-kubernetes-int-or-string": True},
    # Plain-number quantities are compared here; the API server compares the rest when it admits
    # the pod (requests above limits are refused there).
    ("Resources", None): {"x-kubernetes-validations": [
        {"rule": f"!(has(self.limits) && has(self.requests) && has(self.limits.{r}) && has(self.requests.{r}) && "
                 f"type(self.limits.{r}) == int && type(self.requests.{r}) == int) || "
                 f"self.requests.{r} <= self.limits.{r}",
         "message": f"requests.{r} must not exceed limits.{r}"} for r in ("cpu", "memory")]},
    ("DatasetSource", "dir"): {"maxLength": 4096},
    ("ModelSource", "dir"): {"maxLength": 4096},
}
# The schema validators each rule above restates, by the schema class that holds them
# (field validators by field, model validators by None); the tests compare this with schema.py.
VALIDATED: dict[str, set[str | None]] = {
    "ObjectMeta": {"name", "namespace", "labels"}, "GitSource": {"path", "url", "branch"}, "DatasetSource": {None},
    "ResourceList": {"cpu", "memory"}, "Resources": {None},
    "DatasetSpec": {"filename"}, "ModelSource": {None}, "Training": {"datasetName"},
    "ModelServerSpec": {"modelName", "address"}, "NotebookSpec": {None},
}
NAME_RULE = {
    "rule": f"self.metadata.name.matches('{DNS_LABEL_PATTERN}') && size(self.metadata.name) <= 63",
    "message": "metadata.name must be a DNS-1123 label: lower-case letters, digits and '-', "
               "starting and ending with a letter or digit, at most 63 characters (e.g. 'my-model')",
}


class _WithFactoryDefaults(GenerateJsonSchema):
    """pydantic leaves `default_factory` defaults out; CRD defaulting needs them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, BaseModel):
            return dft.model_dump(by_alias=True, exclude_none=True, mode="json")
        return super().encode_default(dft)


def _structural(node: Any, defs: dict[str, Any], owner: str = "") -> Any:
    """Inline $refs, drop nulls and titles, apply FIELD_RULES: a structural schema."""
    if isinstance(node, list):
        return [_structural(n, defs, owner) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs, name)
    if "anyOf" in node:  # Optional[X]: the wire form omits None, so X alone
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _structural({**options[0], **rest}, defs, owner)
    out: dict[str, Any] = {}
    if not node.get("type") and not node.get("properties") and "$ref" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True  # Any: arbitrary JSON, kept as given
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and value is False):
            continue  # additionalProperties: false is implied (unknown fields are pruned or refused)
        if key == "additionalProperties" and (value is True or value == {}):
            out["x-kubernetes-preserve-unknown-fields"] = True  # dict[str, Any]
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {field: _property(owner, field, sub, defs) for field, sub in value.items()}
        elif key in ("default", "enum", "const", "examples"):
            out[key] = copy.deepcopy(value)  # values, not schemas
        else:
            out[key] = _structural(value, defs, owner)
    out.update(copy.deepcopy(FIELD_RULES.get((owner, None), {})) if "properties" in node else {})
    return out


def _property(owner: str, field: str, sub: Any, defs: dict[str, Any]) -> Any:
    prop = _structural(sub, defs, owner)
    extra = FIELD_RULES.get((owner, field))
    if extra:
        prop = {**prop, **copy.deepcopy(extra)}
    if prop.get("x-kubernetes-int-or-string"):  # a quantity: typed by the int-or-string rule, nothing else kept
        prop.pop("x-kubernetes-preserve-unknown-fields", None)
    return prop


_KEY_ORDER = ("type", "format", "description")


def _tidy(value: Any) -> Any:
    """Drop None defaults, give integers int64 (dataLimit is 1e12), put type/description first."""
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _tidy(v) for k, v in value.items() if v is not None}
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    first = {k: out[k] for k in _KEY_ORDER if k in out}
    return {**first, **{k: v for k, v in out.items() if k not in first}}


def spec_schema(kind: str) -> dict[str, Any]:
    """The structural schema of one kind's `spec`."""
    spec_cls = KINDS[kind].model_fields["spec"].annotation
    assert isinstance(spec_cls, type) and issubclass(spec_cls, BaseModel)
    raw = spec_cls.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    return _tidy(_structural(raw, defs, spec_cls.__name__))  # type: ignore[no-any-return]


def status_schema() -> dict[str, Any]:
    raw = Status.model_json_schema(by_alias=True, mode="serialization", schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _tidy(_structural(raw, defs, "Status"))
    conditions = schema["properties"]["conditions"]
    conditions.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    out: dict[str, Any] = _without_defaults(schema)  # the operator writes status; no defaulting into it
    return out


def _without_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_defaults(n) for n in node]
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    return node


def open_api_schema(kind: str) -> dict[str, Any]:
    description = (KINDS[kind].__doc__ or "").strip() or f"A Substratus {kind}."
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(kind),
            "status": status_schema(),
        },
        "x-kubernetes-validations": [copy.deepcopy(NAME_RULE)],
    }


def printer_columns(kind: str) -> list[dict[str, Any]]:
    columns: list[dict[str, Any]] = [
        {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
        {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
    ]
    if kind in ("Dataset", "ModelServer", "Notebook"):
        columns.append({"name": "URL", "type": "string", "jsonPath": ".status.url", "priority": 1})
    if kind == "Model":
        columns.append({"name": "Image", "type": "string", "jsonPath": ".status.containerImage", "priority": 1})
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return columns


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind (Dataset, Model, ModelServer, Notebook)."""
    plural = _PLURALS[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "substratus"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": _SHORT_NAMES[kind], "categories": ["substratus"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": open_api_schema(kind)},
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns(kind),
            }],
        },
    }


def crds() -> list[dict[str, Any]]:
    """All four CRDs, in dependency order."""
    return [crd(kind) for kind in KINDS]


def plural(kind: str) -> str:
    return _PLURALS[kind]
