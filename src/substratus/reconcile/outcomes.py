"""What an action reports when it ends (typed outcomes), how an outcome changes an object's
state (`apply_outcome`, pure), the judgement of a finished job in the same words on every
backend (`verdict`), and the one failure policy of both backends' executors (`temporary`,
`failure`).

The failure policy, in kopf's terms: an action that raised a *temporary* error (an engine or
API call that failed, a contract probe that timed out, a name still taken) is retried with
capped exponential backoff (`Backoff`, kept by the dispatcher) while its object stays in
progress; a *permanent* one becomes a `Failed` outcome, recorded in the object's state and
reported until the spec changes or the object is applied again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Union

from substratus import contract
from substratus.build.conformance import ClauseResult, violation
from substratus.errors import SubstratusError
from substratus.reconcile.actions import Action, CheckContract, CollectJob, StartContainer
from substratus.reconcile.state import AnyState, BuildState, DatasetState, Failure, WorkloadState
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Reason


@dataclass(frozen=True)
class Failed:
    key: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class Verified:
    image: str


@dataclass(frozen=True)
class Digested:
    run_key: str
    digest: str


@dataclass(frozen=True)
class Allocated:
    port: Optional[int] = None
    token: Optional[str] = None


@dataclass(frozen=True)
class PortLost:
    """The chosen port was taken by someone else: choose another."""


Outcome = Union[Failed, Verified, Digested, Allocated, PortLost]
Report = Callable[[ObjectKey, list[Outcome]], None]


def apply_outcome(state: AnyState, outcome: Outcome) -> AnyState:
    """The state after `outcome` (pure)."""
    if isinstance(outcome, Failed):
        failures = {**state.failures, outcome.key: Failure(reason=outcome.reason, message=outcome.message)}
        return state.model_copy(update={"failures": failures})
    if isinstance(outcome, Verified) and isinstance(state, BuildState):
        kept = [i for i in state.verified if i != outcome.image][-7:]  # the latest few images only
        return state.model_copy(update={"verified": [*kept, outcome.image]})
    if isinstance(outcome, Digested) and isinstance(state, DatasetState):
        return state.model_copy(update={"digests": {**state.digests, outcome.run_key: outcome.digest}})
    if isinstance(outcome, Allocated) and isinstance(state, WorkloadState):
        update = {k: v for k, v in (("port", outcome.port), ("token", outcome.token)) if v is not None}
        return state.model_copy(update=update)
    if isinstance(outcome, PortLost) and isinstance(state, WorkloadState):
        return state.model_copy(update={"port": None})
    return state


# ---- the executor -----------------------------------------------------------------------------

def verdict(a: CollectJob, last: str, wrote: bool) -> list[Outcome]:
    """The judgement of a finished load/train job, wherever its outputs live (a local directory, or the
    artifact store of a cluster: the operator checks `wrote` there), in the same words."""
    script = f"{a.step}.sh"
    reason = Reason.LOAD_FAILED if a.step == "load" else Reason.TRAIN_FAILED
    if a.exit_code != 0:
        return [Failed(a.failure_key, reason, f"{script} exited with code {a.exit_code}; last log lines:\n{last}")]
    if a.step == "load" and not wrote:
        return [Failed(a.failure_key, reason,
                       f"{script} exited 0 but wrote nothing at LOAD_DATA_PATH ({contract.DATA_DIR}/{a.expect.name}); "
                       f"the contract says load.sh saves the data at exactly that path. Last log lines:\n{last}")]
    if a.step == "train" and not wrote:
        return [Failed(a.failure_key, reason,
                       f"{script} exited 0 but left {contract.TRAINED_DIR} empty; the contract says train.sh "
                       f"saves the trained model there. Last log lines:\n{last}")]
    return []


def checked(a: CheckContract, results: list[ClauseResult]) -> list[Outcome]:
    """The outcome of a contract check: Verified, or a ContractViolation naming each broken clause by
    the id `sub verify` prints for it (and its fix)."""
    broken = [r for r in results if not r.ok]
    if broken:
        return [Failed(a.key, Reason.CONTRACT_VIOLATION, violation(a.image, a.kind, broken))]
    return [Verified(a.image)]


# ---- the failure policy ------------------------------------------------------------------------

RETRY_BASE = 0.5    # seconds before the first retry of an action that failed for now
RETRY_CAP = 60.0    # ... doubling with each failure in a row, up to this


def temporary(err: BaseException) -> bool:
    """Whether an action that raised `err` should be tried again later (kopf's TemporaryError) rather
    than recorded as failed (PermanentError). The error says so itself (`SubstratusError.temporary`,
    set where the engine's or the API server's words were read); an OSError (a disk, a socket) may
    pass; any other exception is a bug, and retrying a bug only hides it."""
    if isinstance(err, SubstratusError):
        return err.temporary
    return isinstance(err, OSError)


@dataclass(frozen=True)
class Retrying:
    """An action that failed for now and waits out its backoff: what went wrong, and when (on the
    controller's clock) it may run again. Planners see it in `Snapshot.retrying`."""

    message: str
    at: float


def retry_delay(failures: int) -> float:
    """Seconds to wait after the `failures`-th temporary failure in a row (1, 2, ...)."""
    return float(min(RETRY_CAP, RETRY_BASE * 2.0 ** max(0, failures - 1)))


def failure(action: Action, err: BaseException) -> Failed:
    """The permanent failure an action's error means, under the key the planners look for."""
    what = str(err) if isinstance(err, SubstratusError) else f"internal error: {err!r}"
    if isinstance(action, CollectJob):
        reason = Reason.LOAD_FAILED if action.step == "load" else Reason.TRAIN_FAILED
        return Failed(action.failure_key, reason, f"could not judge {action.step}.sh: {what}")
    if isinstance(action, StartContainer):
        return Failed(action.failure_key, action.failure_reason, f"could not start {action.spec.name}: {what}")
    return Failed(action.key, Reason.BUILD_FAILED, what)
