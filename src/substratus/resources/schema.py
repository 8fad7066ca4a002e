"""The resource schemas: Dataset, Model, ModelServer (alias Server), Notebook.

These are the bottom layer: pure data plus pure functions, no I/O. Field names
are snake_case in Python and camelCase on the wire (`batch_size` <->
`batchSize`), as in Kubernetes. Unknown fields are errors (`extra="forbid"`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Callable, Literal, Optional, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from substratus import contract
from substratus.resources import labels as label_rules
from substratus.resources.giturl import check_branch, check_git_url
from substratus.resources.limits import Quantity, RunLimits, cpu_cores, memory_bytes, run_limits
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Status

API_VERSION = "substratus.ai/v1"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_DATA_LIMIT = 1_000_000_000_000
MAX_LABELS = 64
T = TypeVar("T", bound=type)


def described(text: str) -> Callable[[T], T]:
    """A class docstring that names facts of the contract (formatted from `substratus.contract`);
    pydantic reads `__doc__` when it writes a schema, so the CRDs and `sub explain` show it."""
    def apply(cls: T) -> T:
        cls.__doc__ = text
        return cls
    return apply


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


def _label_value(value: Any) -> str:
    return label_rules.check_value(value)


LabelKey = Annotated[str, BeforeValidator(label_rules.check_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]


class ObjectMeta(Schema):
    """Who the object is: its name, namespace and labels."""

    name: str = Field(description="The object's name, unique per kind and namespace: a DNS-1123 label (lower-case "
                                  "letters, digits and '-', at most 63 characters), e.g. 'tiny-gpt'.")
    namespace: str = Field(default="default", description="A DNS-1123 label grouping objects; references "
                                                          "(modelName, datasetName) stay inside it.")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description=(
        "Key/value pairs to select objects by (`sub get -l app=demo`, `sub delete -l app=demo`). Keys are "
        "'name' or 'prefix/name' and values at most 63 characters, as in Kubernetes."))
    generation: Optional[int] = Field(default=None, description="set by the control plane; ignored on input")
    resource_version: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")
    uid: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")
    creation_timestamp: Optional[str] = Field(default=None, description="set by the control plane; ignored on input")

    _name_ok = field_validator("name")(lambda v: check_dns_label(v, "name"))
    _ns_ok = field_validator("namespace")(lambda v: check_dns_label(v, "namespace"))
    _labels_ok = field_validator("labels")(lambda v: check_label_count(v))


def check_label_count(labels: dict[str, str]) -> dict[str, str]:
    """A bound on how many labels one object carries (their syntax: resources.labels)."""
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(labels)}")
    return labels


class GitSource(Schema):
    """A directory in a git repository holding a Dockerfile that keeps the container contract."""

    url: str = Field(min_length=1, description="The repository to clone: https://, http://, ssh://, git://, "
                                                "file://, git@host:path or an absolute path; never a password or "
                                                "token (use a credential helper or an ssh key), never an option "
                                                "('-...') or a remote helper ('ext::'). A URL that does not clone "
                                                "is refused when applied.")
    path: str = Field(default="", description="The directory inside the repository with the Dockerfile; '' is "
                                              "the repository root. '..' is not allowed.")
    branch: str = Field(default="", description="The branch (or tag) to build; '' is the repository's default "
                                                "branch. A new commit under `path` rebuilds the image at the next "
                                                "apply.")

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
    """CPU and memory, as Kubernetes writes them."""

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

    limits: Optional[ResourceList] = Field(default=None, description="Enforced by the engine: cpu -> --cpus, "
                                                                   "memory -> --memory (swap is not extra memory).")
    requests: Optional[ResourceList] = Field(default=None, description="Checked (never above the limit) and kept "
                                                                     "for Kubernetes; one machine does not "
                                                                     "schedule with them.")

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
    """Where the dataset's loader image is built from: exactly one of git or dir."""

    git: Optional[GitSource] = Field(default=None, description="Build from a directory in a git repository.")
    dir: Optional[str] = Field(default=None, description="Build from a local directory, relative to the manifest "
                                                         "file (or to the current directory with `-f -`).")

    @model_validator(mode="after")
    def _exactly_one(self) -> "DatasetSource":
        given = [k for k in ("git", "dir") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'git' or 'dir'")
        return self


class DatasetSpec(WithResources):
    """A dataset: an image whose load.sh writes one data file."""

    filename: str = Field(description="The name of the file load.sh writes (LOAD_DATA_PATH=/data/<filename>): a "
                                      "plain file name such as 'data.jsonl', no '/' and no '..'.")
    source: DatasetSource = Field(description="Where the loader image (Dockerfile, load.sh, notebook.sh) comes "
                                              "from.")
    resources: Optional[Resources] = Field(default=None, description=(
        "Bounds on this object's containers: limits (cpu, memory) become --cpus/--memory; requests must not "
        "exceed them. Kubernetes quantities: '500m', '2', '512Mi', '4Gi'."))

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
    """Where the model image comes from: exactly one of git, dir or modelName."""

    git: Optional[GitSource] = Field(default=None, description="Build from a directory in a git repository.")
    dir: Optional[str] = Field(default=None, description="Build from a local directory, relative to the manifest "
                                                         "file (or to the current directory with `-f -`).")
    model_name: Optional[str] = Field(default=None, description="Start from another Model in the same namespace "
                                                                "(the base model of a fine-tuning run).")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSource":
        given = [k for k in ("git", "dir", "model_name") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'git', 'dir' or 'modelName'")
        if self.model_name is not None:
            check_dns_label(self.model_name, "modelName")
        return self


class TrainingParams(Schema):
    """Handed to train.sh as environment variables."""

    epochs: int = Field(default=3, ge=1, description="Passes over the data (TRAIN_EPOCHS).")
    data_limit: int = Field(default=DEFAULT_DATA_LIMIT, ge=1, description="At most this many records of the "
                                                                          "dataset are used (TRAIN_DATA_LIMIT).")
    batch_size: int = Field(default=1, ge=1, description="Records per training step (TRAIN_BATCH_SIZE).")


class Training(Schema):
    """Fine-tune the source model on a dataset with the base image's train.sh."""

    dataset_name: str = Field(description="The Dataset (same namespace) to train on; training waits until it is "
                                          "loaded.")
    params: TrainingParams = Field(default_factory=TrainingParams, description="Training parameters.")

    _ds_ok = field_validator("dataset_name")(lambda v: check_dns_label(v, "datasetName"))


class Size(Schema):
    """How big the model is; informational."""

    parameter_count: Optional[int] = Field(default=None, ge=1, description="Number of parameters.")
    parameter_bits: Optional[int] = Field(default=None, ge=1, description="Bits per parameter (32, 16, 8, 4...).")


class Compute(Schema):
    """What the model's containers may run on."""

    types: list[Literal["CPU", "GPU"]] = Field(default_factory=lambda: list[Literal["CPU", "GPU"]](["CPU"]),
                                               min_length=1, description=(
        "Preference order: the first type the machine has is used (GPU needs the engine to pass one through)."))


@described(f"A model: an image with serve.sh, train.sh and notebook.sh and its artifacts in {contract.SAVED_DIR}.")
class ModelSpec(WithResources):

    source: ModelSource = Field(description="Where the model image comes from.")
    training: Optional[Training] = Field(default=None, description="Fine-tune the source model on a dataset; "
                                                                   "the result is a new image.")
    size: Optional[Size] = Field(default=None, description="How big the model is; informational.")
    compute: Compute = Field(default_factory=Compute, description="What the model's containers may run on.")
    resources: Optional[Resources] = Field(default=None, description=(
        "Bounds on this object's containers: limits (cpu, memory) become --cpus/--memory; requests must not "
        "exceed them. Kubernetes quantities: '500m', '2', '512Mi', '4Gi'."))


# ---- ModelServer / Notebook ------------------------------------------------------------


@described(f"A server: runs the model image's serve.sh and publishes port {contract.SERVER_PORT}.")
class ModelServerSpec(WithResources):

    model_name: str = Field(description="The Model (same namespace) to serve; the server waits until it is "
                                        "ready and rolls onto each new image of it.")
    address: str = Field(default="127.0.0.1", description=(
        "IPv4 host address the server's port is published on; anything but loopback (127.0.0.1) makes the "
        "control plane require a bearer token (see `sub describe`). IPv6 addresses are refused: the engines' "
        "default bridge publishes no IPv6 port"))
    resources: Optional[Resources] = Field(default=None, description=(
        "Bounds on this object's containers: limits (cpu, memory) become --cpus/--memory; requests must not "
        "exceed them. Kubernetes quantities: '500m', '2', '512Mi', '4Gi'."))

    _m_ok = field_validator("model_name")(lambda v: check_dns_label(v, "modelName"))

    @field_validator("address")
    @classmethod
    def _ip_address(cls, v: str) -> str:
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address: use 127.0.0.1 (this machine only, the default) "
                             "or 0.0.0.0 (every interface; a bearer token is then required)") from None
        if ip.version == 6:
            # `-p ::1:HOSTPORT:PORT` is "invalid port format", and a bracketed [::1] publish was never reached
            # here (podman 4.3's bridge has no IPv6): refuse it now rather than fail the server later.
            raise ValueError(f"{v!r} is an IPv6 address; the server's port is published on IPv4 only: use "
                             "127.0.0.1 (this machine only, the default) or 0.0.0.0 (every interface)")
        return str(ip)


@described(f"A notebook: runs notebook.sh of a model or dataset image and publishes port {contract.NOTEBOOK_PORT}.")
class NotebookSpec(WithResources):

    model_name: Optional[str] = Field(default=None, description="Open a notebook on this Model's image (set "
                                                                "exactly one of modelName and datasetName).")
    dataset_name: Optional[str] = Field(default=None, description="Open a notebook on this Dataset's image, "
                                                                  "with its data at /data (read-only).")
    suspend: bool = Field(default=False, description="true stops the notebook's container and keeps the object; "
                                                     "false starts it again.")
    resources: Optional[Resources] = Field(default=None, description=(
        "Bounds on this object's containers: limits (cpu, memory) become --cpus/--memory; requests must not "
        "exceed them. Kubernetes quantities: '500m', '2', '512Mi', '4Gi'."))

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

    api_version: Literal["substratus.ai/v1"] = Field(default="substratus.ai/v1", description="Always "
                                                     "'substratus.ai/v1'.")
    kind: str = Field(description="Dataset, Model, ModelServer (or Server) or Notebook.")
    metadata: ObjectMeta = Field(description="Name, namespace and labels.")
    spec: Any
    status: Status = Field(default_factory=Status, description="Written by the control plane (ignored on input): "
                                                               "readiness, conditions, URLs, progress, lineage.")

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.metadata.namespace, self.metadata.name)

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
    """Data loaded by an image's load.sh into one file, for training and notebooks."""

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec = Field(description="What to load and how.")


class Model(Resource):
    """A model image (built from a source, or fine-tuned from another model on a dataset)."""

    kind: Literal["Model"] = "Model"
    spec: ModelSpec = Field(description="Where the model comes from and how it is trained.")


@described(f"A running server of a model (serve.sh on port {contract.SERVER_PORT}, published on 127.0.0.1 by "
           "default).")
class ModelServer(Resource):

    kind: Literal["ModelServer"] = "ModelServer"
    spec: ModelServerSpec = Field(description="Which model to serve and where.")


@described(f"A Jupyter notebook (notebook.sh on port {contract.NOTEBOOK_PORT}) on a model's or a dataset's image.")
class Notebook(Resource):

    kind: Literal["Notebook"] = "Notebook"
    spec: NotebookSpec = Field(description="Which image to open and whether it runs.")


KINDS: dict[str, type[Resource]] = {
    "Dataset": Dataset,
    "Model": Model,
    "ModelServer": ModelServer,
    "Notebook": Notebook,
}
