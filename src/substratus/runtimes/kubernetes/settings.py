"""What a cluster operator configures, read from the `substratus-settings` ConfigMap.

`sub kube install` writes the ConfigMap (key `settings.yaml`) from its flags;
the operator reads it once at start and passes a `KubeSettings` down to the
generators. Unknown keys are errors naming the key, as in manifests.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from substratus.errors import ValidationError

SETTINGS_KEY = "settings.yaml"
DEFAULT_NAMESPACE = "substratus"
DEFAULT_BUILDER_IMAGE = "docker.io/moby/buildkit:v0.23.2-rootless"
DEFAULT_OPERATOR_IMAGE = "localhost/substratus/operator:0.1.0"
LOCAL_IMAGE_PREFIX = "localhost/substratus/"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Toleration(_Settings):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

    def wire(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v != ""}


class Placement(_Settings):
    """Where pods go: node selector and tolerations."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


class WorkloadSecurity(_Settings):
    """The user contract images run as. Unset: the image's own USER (the contract names none)."""

    run_as_user: Optional[int] = Field(default=None, ge=0)
    run_as_group: Optional[int] = Field(default=None, ge=0)
    fs_group: Optional[int] = Field(default=None, ge=0)


class KubeSettings(_Settings):
    namespace: str = DEFAULT_NAMESPACE
    registry: str = Field(default="", description="where built images are pushed, e.g. registry.example.com/substratus")
    registry_secret: str = Field(default="", description="a kubernetes.io/dockerconfigjson Secret in each namespace")
    registry_insecure: bool = False
    artifact_store: str = Field(default="pvc://substratus-artifacts",
                                description="s3://bucket/prefix, gs://bucket/prefix or pvc://claim/prefix")
    s3_endpoint_url: str = ""
    artifact_secret: str = Field(default="", description="a Secret whose keys become the artifact sidecars' env "
                                                         "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)")
    builder_image: str = DEFAULT_BUILDER_IMAGE
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    gpu_resource_name: str = "nvidia.com/gpu"
    placement: Placement = Field(default_factory=Placement)
    gpu_placement: Placement = Field(default_factory=lambda: Placement(
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]))
    workload_security: WorkloadSecurity = Field(default_factory=WorkloadSecurity)
    ready_timeout_seconds: int = Field(default=600, ge=1)

    @field_validator("artifact_store")
    @classmethod
    def _store_url(cls, v: str) -> str:
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in ("s3", "gs", "gcs", "pvc") or not v.split("://", 1)[1].strip("/"):
            raise ValueError(f"{v!r} is not an artifact store URL: use s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] "
                             "or pvc://CLAIM[/PREFIX]")
        return v.rstrip("/")

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str) -> str:
        if v and (v.startswith(("http://", "https://")) or v.endswith("/") or " " in v):
            raise ValueError(f"{v!r}: give a registry and repository prefix such as registry.example.com/substratus, "
                             "without scheme or trailing '/'")
        return v

    def image_ref(self, local_tag: str) -> str:
        """Where a content-named image (`localhost/substratus/x:h`) lives in this cluster's registry."""
        if not self.registry or not local_tag.startswith(LOCAL_IMAGE_PREFIX):
            return local_tag
        return f"{self.registry}/{local_tag.removeprefix(LOCAL_IMAGE_PREFIX)}"

    def local_ref(self, ref: str) -> str:
        """The inverse of `image_ref`: the planners' name for an image in the registry."""
        if self.registry and ref.startswith(self.registry + "/"):
            return LOCAL_IMAGE_PREFIX + ref.removeprefix(self.registry + "/")
        return ref

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, mode="json"), sort_keys=False)


def parse_settings(data: dict[str, Any], *, source: str = "settings") -> KubeSettings:
    """Validate a settings mapping; errors name the key (`gpuPlacement.tolerations[0].effect`)."""
    try:
        return KubeSettings.model_validate(data)
    except pydantic.ValidationError as err:
        problems = []
        for e in err.errors():
            loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
            msg = "unknown setting: remove it or check its spelling" if e["type"] == "extra_forbidden" \
                else e["msg"].removeprefix("Value error, ")
            problems.append((loc, msg))
        raise ValidationError(problems, source=source, hint="fix the settings named above") from None


def settings_from_configmap(configmap_data: dict[str, str]) -> KubeSettings:
    text = configmap_data.get(SETTINGS_KEY, "")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValidationError([(SETTINGS_KEY, f"malformed YAML: {err}")], source="ConfigMap substratus-settings") \
            from None
    if not isinstance(data, dict):
        raise ValidationError([(SETTINGS_KEY, "must be a mapping")], source="ConfigMap substratus-settings")
    return parse_settings(data, source=f"ConfigMap substratus-settings ({SETTINGS_KEY})")
