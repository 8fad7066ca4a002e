"""What the controller remembers about each object between passes, named and typed.

This replaces a free-form dict: each kind has one record, stored as JSON in
the store's `state` column, read and written only by that object's own
reconcile pass and by the executor reporting the outcome of the object's
actions. Objects never read each other's state: they see each other through
published `status` (a Dataset's data location and digest, a Model's image).

Everything the world already says (which containers run, which images exist,
whether a run left its success marker) is observed afresh each pass, never
remembered here.
"""

from __future__ import annotations

from typing import Any, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from substratus.resources.status import Reason


class _State(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)


class Failure(_State):
    """An action that failed in a way retrying will not fix: reported until the spec changes or the
    object is re-applied (which is how a person says "try again")."""

    reason: Reason
    message: str


class Source(_State):
    """A resolved `spec.source`: recorded at apply time, when the source was fetched."""

    revision: str                   # git tree of `path` (or commit), or the dir's content digest
    context: str                    # build context on disk (local control plane)
    description: str                # for people; credentials never included
    git_url: Optional[str] = None
    git_commit: Optional[str] = None
    git_path: Optional[str] = None
    dir: Optional[str] = None


class BuildState(_State):
    """Shared by the kinds that build an image from a source (Dataset, Model)."""

    source: Optional[Source] = None
    failures: dict[str, Failure] = Field(default_factory=dict)   # action key -> failure
    verified: list[str] = Field(default_factory=list)           # images that passed the contract check


class DatasetState(BuildState):
    digests: dict[str, str] = Field(default_factory=dict)       # run key -> "sha256:..." of the data file


class ModelState(BuildState):
    pass


class WorkloadState(_State):
    """A long-running container (server or notebook): where it is published and how it fares."""

    failures: dict[str, Failure] = Field(default_factory=dict)
    port: Optional[int] = None          # host port, chosen by the executor and kept across restarts
    token: Optional[str] = None         # notebook token / server bearer token, chosen by the executor
    started_at: Optional[float] = None  # when the current container was started (ready timeout)
    ready_since: Optional[float] = None
    probe_failures: int = 0             # consecutive failed readiness probes
    restarts: int = 0
    next_restart_at: Optional[float] = None


class ServerState(WorkloadState):
    pass


class NotebookState(WorkloadState):
    pass


AnyState = Union[DatasetState, ModelState, ServerState, NotebookState]
STATE_TYPES: dict[str, type[_State]] = {"Dataset": DatasetState, "Model": ModelState, "ModelServer": ServerState,
                                        "Notebook": NotebookState}
S = TypeVar("S", bound=_State)


def load(kind: str, data: dict[str, Any]) -> AnyState:
    state = STATE_TYPES[kind].model_validate(data or {})
    assert isinstance(state, (DatasetState, ModelState, ServerState, NotebookState))
    return state


def dump(state: _State) -> dict[str, Any]:
    return state.dump()
