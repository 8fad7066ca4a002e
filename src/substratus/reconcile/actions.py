"""What a plan asks the world to do. Plain data: the planners make these, the executor runs them.

The verbs are deliberately engine-neutral (build an image from a source,
check it against the contract, start a workload, remove it, judge a finished
job, choose a port or a token), so the same planners drive the local engine
and the Kubernetes operator. Each action has a `key`: an action whose key is
in flight is never started twice, and a failure is remembered under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from substratus.reconcile.state import Source
from substratus.resources.status import Reason
from substratus.runtimes.base import RunSpec


@dataclass(frozen=True)
class BuildImage:
    """Build `tag` from the object's resolved source (a local context, or git/dir for a cluster builder)."""

    tag: str
    source: Source = field(hash=False, compare=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    log_path: Optional[Path] = None

    @property
    def key(self) -> str:
        return f"build:{self.tag}"


@dataclass(frozen=True)
class CheckContract:
    """Check `image` against the static clauses (WORKDIR, scripts on PATH) for `kind`.

    Runs beside the next step (speculatively): a job started on an image that is still being
    checked only counts once the check passed."""

    image: str
    kind: Literal["Model", "Dataset"]

    @property
    def key(self) -> str:
        return f"check:{self.image}"


@dataclass(frozen=True)
class BuildTrained:
    """Build `tag` FROM `base` with the run's trained/ copied into the saved model's directory
    (`build.trained`)."""

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
    failure_key: str = ""                       # where a failure to start is remembered
    failure_reason: Reason = Reason.SERVE_FAILED

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
    step: Literal["load", "train"]
    failure_key: str
    run_key: str = ""

    @property
    def key(self) -> str:
        return f"collect:{self.name}"


@dataclass(frozen=True)
class Allocate:
    """Choose a host port or a secret token and record it in the object's state (not in the planner:
    planners do no I/O and no randomness)."""

    what: Literal["port", "token"]

    @property
    def key(self) -> str:
        return f"allocate:{self.what}"


Action = Union[BuildImage, CheckContract, BuildTrained, StartContainer, RemoveContainer, CollectJob, Allocate]
SLOW_ACTIONS = (BuildImage, CheckContract, BuildTrained, CollectJob)
