"""What a plan asks the world to do. Plain data: the planners make these, `apply` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from substratus.runtimes.base import RunSpec


@dataclass(frozen=True)
class EnsureImage:
    """Build `tag` from `context` if missing, then check it against the contract for `kind`."""

    tag: str
    context: Path
    kind: str  # contract kind: Model or Dataset
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    log_path: Optional[Path] = None

    @property
    def key(self) -> str:
        return f"image:{self.tag}"


@dataclass(frozen=True)
class BuildTrained:
    """Build `tag` FROM `base` with the run's trained/ copied into /model/saved."""

    tag: str
    base: str
    run_dir: Path
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        return f"trained:{self.tag}"


@dataclass(frozen=True)
class StartContainer:
    spec: RunSpec = field(hash=False, compare=False)
    reason: str = ""
    failure_key: str = ""      # where a failure to start is remembered (see plan.failure)
    failure_reason: str = ""   # the condition reason it becomes

    @property
    def key(self) -> str:
        return f"start:{self.spec.name}"


@dataclass(frozen=True)
class RemoveContainer:
    name: str
    save_log_to: Optional[Path] = None
    reason: str = ""

    @property
    def key(self) -> str:
        return f"remove:{self.name}"


@dataclass(frozen=True)
class CollectJob:
    """A load/train container exited: keep its log, judge the outputs, mark the run, remove it."""

    name: str
    run_dir: Path
    exit_code: int
    expect: Path          # a file (dataset) or a directory that must be non-empty (model)
    step: str             # "load" or "train"
    failure_key: str

    @property
    def key(self) -> str:
        return f"collect:{self.name}"


Action = Union[EnsureImage, BuildTrained, StartContainer, RemoveContainer, CollectJob]
SLOW_ACTIONS = (EnsureImage, BuildTrained, CollectJob)
