"""What the control plane tells people about an object: `status` and its conditions.

Conditions follow Kubernetes: `lastTransitionTime` changes only when a
condition's `status` flips between True, False and Unknown, not when its
reason or message does. Reasons are the `Reason` enum (`resources.reasons`).

Pure data and pure functions; the bottom layer.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from substratus.resources.reasons import DONE, FAILED, IN_PROGRESS, Reason

__all__ = ["DONE", "FAILED", "IN_PROGRESS", "Reason", "Condition", "ConditionStatus", "Lineage", "LineageDataset",
           "LineageModel", "Progress", "SourceStatus", "Status", "merge_conditions"]

ConditionStatus = Literal["True", "False", "Unknown"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(_Wire):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = ""


class Progress(_Wire):
    """The latest line of a job's progress.jsonl, with what can be derived from the series."""

    phase: str                          # "load" or "train"
    step: Optional[int] = None
    total_steps: Optional[int] = None
    percent: Optional[float] = None
    epoch: Optional[float] = None
    loss: Optional[float] = None
    eta_seconds: Optional[float] = None
    updated_at: Optional[float] = None  # unix seconds of the latest line
    metrics: dict[str, float] = Field(default_factory=dict)  # any other numbers the job wrote


class SourceStatus(_Wire):
    """Where an object's image came from, for people and lineage (credentials never included)."""

    description: str
    revision: str
    git_url: Optional[str] = None
    git_commit: Optional[str] = None
    git_path: Optional[str] = None
    dir: Optional[str] = None


class LineageModel(_Wire):
    name: str
    image: str
    image_id: Optional[str] = None
    source: Optional[SourceStatus] = None


class LineageDataset(_Wire):
    name: str
    url: Optional[str] = None
    digest: Optional[str] = None        # "sha256:<hex>" of the data file
    source: Optional[SourceStatus] = None


class Lineage(_Wire):
    """Where a trained model came from: base model, dataset, training parameters."""

    base_model: LineageModel
    dataset: LineageDataset
    params: dict[str, Any] = Field(default_factory=dict)
    trained_image: Optional[str] = None


class Status(_Wire):
    ready: bool = False
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int = 0
    url: Optional[str] = None              # Dataset: the data file; ModelServer/Notebook: where it answers
    container_image: Optional[str] = None  # Model: the image with its saved artifacts; Dataset: its loader image
    digest: Optional[str] = None           # Dataset: "sha256:<hex>" of the loaded file
    source: Optional[SourceStatus] = None
    progress: Optional[Progress] = None
    lineage: Optional[Lineage] = None
    restarts: Optional[int] = None
    compute_types: Optional[list[str]] = None  # Model: spec.compute.types, for the servers and notebooks run on it

    def condition(self, type_: str) -> Optional[Condition]:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def reason(self) -> str:
        ready = self.condition("Ready")
        return ready.reason if ready else Reason.PENDING.value


def merge_conditions(old: list[Condition], new: list[Condition], now: str) -> list[Condition]:
    """`new` with `lastTransitionTime` carried over from `old` where the status did not flip."""
    previous = {c.type: c for c in old}
    out = []
    for c in new:
        prev = previous.get(c.type)
        keep = prev is not None and prev.status == c.status and prev.last_transition_time
        out.append(c.model_copy(update={"last_transition_time": prev.last_transition_time if keep and prev
                                        else now}))
    return out
