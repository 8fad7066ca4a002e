"""What an action reports when it ends (typed outcomes), how an outcome changes an object's
state (`apply_outcome`, pure), and the judgement of a finished job in the same words on every
backend (`verdict`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Optional, Union

from substratus.build import contract
from substratus.reconcile.actions import Action, CheckContract, CollectJob
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


def crash_outcome(action: Action, err: Exception) -> Outcome:
    if isinstance(action, CollectJob):
        reason = Reason.LOAD_FAILED if action.step == "load" else Reason.TRAIN_FAILED
        return Failed(action.failure_key, reason, f"internal error while judging {action.step}.sh: {err}")
    return Failed(action.key, Reason.BUILD_FAILED, f"internal error: {err}")


def contract_verdict(a: CheckContract, results: Iterable[contract.ClauseResult]) -> list[Outcome]:
    """The contract check's outcome from its clauses, in the same words on every backend."""
    problems = [r for r in results if not r.ok]
    if problems:
        text = "; ".join(f"{r.clause}: {r.evidence}" for r in problems)
        return [Failed(a.key, Reason.CONTRACT_VIOLATION, f"image {a.image} breaks the {a.kind} contract: {text}")]
    return [Verified(a.image)]
