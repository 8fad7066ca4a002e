"""The resource schemas: Dataset, Model, ModelServer (alias Server), Notebook.

These are the bottom layer: pure data plus pure functions, no I/O. Field names
are snake_case in Python and camelCase on the wire (`batch_size` <->
`batchSize`), as in Kubernetes. Unknown fields are errors (`extra="forbid"`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from substratus.resources.giturl import check_branch, check_git_url
from substratus.resources.limits import Quantity, RunLimits, cpu_cores, memory_bytes, run_limits
from substratus.resources.status import Status

API_VERSION = "substratus.ai/v1"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_DATA_LIMIT = 1_000_000_000_000
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_LABELS = 64


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON-ready form, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def check_dns_label(value: str, what: str = "name") -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 63:
        raise ValueError(f"{what} {value!r} is longer than 63 characters")
    if not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{what} {value!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'my-model')"
        )
    return value


class ObjectMeta(Schema):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    generation: Optional[int] = Field(default=None, description="set by the control plane; ignored on input")
    resource_version: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")
    uid: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")
    creation_timestamp: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")

    _name_ok = field_validator("name")(lambda v: check_dns_label(v, "name"))
    _ns_ok = field_validator("namespace")(lambda v: check_dns_label(v, "namespace"))
    _labels_ok = field_validator("labels")(lambda v: check_labels(v))


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Kubernetes label syntax, so labels stay short, printable and portable to a cluster."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if not name or len(name) > 63 or not LABEL_NAME.match(name) or \
                (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))):
            raise ValueError(f"label key {key!r} is not valid: [prefix/]name, name up to 63 letters, digits, "
                             "'-', '_' or '.', starting and ending with a letter or digit")
        if len(value) > 63 or not LABEL_NAME.match(value):
            raise ValueError(f"label {key!r}: value {value[:80]!r} is not valid: up to 63 letters, digits, "
                             "'-', '_' or '.', starting and ending with a letter or digit (or empty)")
    return labels


class GitSource(Schema):
    url: str = Field(min_length=1)
    path: str = ""
    branch: str = ""

    _url_ok = field_validator("url")(lambda v: check_git_url(v))
    _branch_ok = field_validator("branch")(lambda v: check_branch(v))

    @field_validator("path")
    @classmethod
    def _relative_path(cls, v: str) -> str:
        parts = [p for p in v.strip("/").split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError("must stay inside the repository: '..' is not allowed")
        if any(ord(c) < 32 or c == "\x7f" for c in v):
            raise ValueError("must not contain control characters")
        return "/".join(parts)


# ---- spec.resources (Kubernetes-shaped) -----------------------------------------------------


class ResourceList(Schema):
    cpu: Optional[Quantity] = Field(default=None, description="CPU cores: '500m', '2'")
    memory: Optional[Quantity] = Field(default=None, description="bytes: '512Mi', '4Gi'")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu_ok(cls, v: Any) -> Any:
        if v is not None:
            cpu_cores(v)  # raises ValueError naming the accepted forms
        return v

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_ok(cls, v: Any) -> Any:
        if v is not None:
            memory_bytes(v)
        return v


class Resources(Schema):
    """`limits` are enforced by the engine (--cpus, --memory); `requests` must not exceed them."""

    limits: Optional[ResourceList] = None
    requests: Optional[ResourceList] = None

    @model_validator(mode="after")
    def _requests_within_limits(self) -> "Resources":
        if self.limits is None or self.requests is None:
            return self
        for name, parse in (("cpu", cpu_cores), ("memory", memory_bytes)):
            lim, req = getattr(self.limits, name), getattr(self.requests, name)
            if lim is not None and req is not None and parse(req) > parse(lim):
                raise ValueError(f"requests.{name} ({req}) must not exceed limits.{name} ({lim})")
        return self


class WithResources(Schema):
    """A spec whose containers may be bounded by `spec.resources.limits` (each declares the field last)."""

    def run_limits(self) -> RunLimits:
        resources: Optional[Resources] = getattr(self, "resources", None)
        lim = resources.limits if resources else None
        return run_limits(lim.cpu, lim.memory) if lim else RunLimits()


# ---- Dataset -------------------------------------------------------------------------


class DatasetSource(Schema):
    git: Optional[GitSource] = None
    dir: Optional[str] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "DatasetSource":
        given = [k for k in ("git", "dir") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'git' or 'dir'")
        return self


class DatasetSpec(WithResources):
    filename: str
    source: DatasetSource
    resources: Optional[Resources] = None

    @field_validator("filename")
    @classmethod
    def _plain_filename(cls, v: str) -> str:
        if not v or v.strip() != v:
            raise ValueError("must be a plain, non-empty file name such as 'data.jsonl'")
        if "/" in v or "\\" in v:
            raise ValueError(f"{v!r} contains a path separator: give a plain file name such as 'data.jsonl'")
        if v in (".", "..") or ".." in v.split("."):
            raise ValueError(f"{v!r} is not allowed: give a plain file name such as 'data.jsonl'")
        return v


# ---- Model ---------------------------------------------------------------------------


class ModelSource(Schema):
    git: Optional[GitSource] = None
    dir: Optional[str] = None
    model_name: Optional[str] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSource":
        given = [k for k in ("git", "dir", "model_name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'git', 'dir' or 'modelName'")
        if self.model_name is not None:
            check_dns_label(self.model_name, "modelName")
        return self


class TrainingParams(Schema):
    epochs: int = Field(default=3, ge=1)
    data_limit: int = Field(default=DEFAULT_DATA_LIMIT, ge=1)
    batch_size: int = Field(default=1, ge=1)


class Training(Schema):
    dataset_name: str
    params: TrainingParams = Field(default_factory=TrainingParams)

    _ds_ok = field_validator("dataset_name")(lambda v: check_dns_label(v, "datasetName"))


class Size(Schema):
    parameter_count: Optional[int] = Field(default=None, ge=1)
    parameter_bits: Optional[int] = Field(default=None, ge=1)


class Compute(Schema):
    types: list[Literal["CPU", "GPU"]] = Field(default_factory=lambda: list[Literal["CPU", "GPU"]](["CPU"]),
                                               min_length=1)


class ModelSpec(WithResources):
    source: ModelSource
    training: Optional[Training] = None
    size: Optional[Size] = None
    compute: Compute = Field(default_factory=Compute)
    resources: Optional[Resources] = None


# ---- ModelServer / Notebook ------------------------------------------------------------


class ModelServerSpec(WithResources):
    model_name: str
    address: str = Field(default="127.0.0.1", description=(
        "host address the server's port is published on; anything but loopback (127.0.0.1, ::1) makes the "
        "control plane require a bearer token (see `sub describe`)"))
    resources: Optional[Resources] = None

    _m_ok = field_validator("model_name")(lambda v: check_dns_label(v, "modelName"))

    @field_validator("address")
    @classmethod
    def _ip_address(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address: use 127.0.0.1 (this machine only, the default) "
                             "or 0.0.0.0 (every interface; a bearer token is then required)") from None


class NotebookSpec(WithResources):
    model_name: Optional[str] = None
    dataset_name: Optional[str] = None
    suspend: bool = False
    resources: Optional[Resources] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "NotebookSpec":
        given = [k for k in ("model_name", "dataset_name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'modelName' or 'datasetName'")
        for k in given:
            check_dns_label(getattr(self, k), to_camel(k))
        return self


class Resource(Schema):
    """One object: apiVersion, kind, metadata, spec, status. Subclassed per kind."""

    api_version: Literal["substratus.ai/v1"] = "substratus.ai/v1"
    kind: str
    metadata: ObjectMeta
    spec: Any
    status: Status = Field(default_factory=Status)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.metadata.namespace, self.metadata.name)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def ref(self) -> str:
        """Human form, e.g. `model/tiny-gpt` (namespace shown when not default)."""
        ns = "" if self.metadata.namespace == "default" else f"{self.metadata.namespace}/"
        return f"{self.kind.lower()}/{ns}{self.metadata.name}"


class Dataset(Resource):
    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec


class Model(Resource):
    kind: Literal["Model"] = "Model"
    spec: ModelSpec


class ModelServer(Resource):
    kind: Literal["ModelServer"] = "ModelServer"
    spec: ModelServerSpec


class Notebook(Resource):
    kind: Literal["Notebook"] = "Notebook"
    spec: NotebookSpec


KINDS: dict[str, type[Resource]] = {
    "Dataset": Dataset,
    "Model": Model,
    "ModelServer": ModelServer,
    "Notebook": Notebook,
}
