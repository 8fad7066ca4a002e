"""The one vocabulary of condition reasons.

Planners set them, the CLI reads them (`sub apply --wait` stops on a
`FAILED` one), the dashboard and the README's table show them (a unit test
keeps the README in step). Plain Python, no pydantic: the CLI imports this.
"""

from __future__ import annotations

import enum

from substratus.contract import NOTEBOOK_PORT, SERVER_READINESS, TRAINED_DIR


class Reason(str, enum.Enum):
    """Why a condition is what it is. `describe()` gives the sentence the README shows."""

    # work in progress
    PENDING = "Pending"
    BUILDING = "Building"
    LOADING = "Loading"
    TRAINING = "Training"
    STARTING = "Starting"
    NOT_READY = "NotReady"
    ROLLING = "Rolling"
    SERVER_EXITED = "ServerExited"
    WAITING_FOR_DATASET = "WaitingForDataset"
    WAITING_FOR_MODEL = "WaitingForModel"
    DELETING = "Deleting"
    # failed: waiting longer will not help; re-apply (or fix the spec) to retry
    SOURCE_FAILED = "SourceFailed"
    BUILD_FAILED = "BuildFailed"
    CONTRACT_VIOLATION = "ContractViolation"
    LOAD_FAILED = "LoadFailed"
    TRAIN_FAILED = "TrainFailed"
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    SERVE_FAILED = "ServeFailed"
    NOTEBOOK_FAILED = "NotebookFailed"
    DEPENDENCY_FAILED = "DependencyFailed"
    # done
    BUILT = "Built"
    BASE_MODEL_READY = "BaseModelReady"
    LOADED = "Loaded"
    READY = "Ready"
    TRAINED = "Trained"
    SERVING = "Serving"
    RUNNING = "Running"
    SUSPENDED = "Suspended"

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        return self in FAILED

    @property
    def settled(self) -> bool:
        """Done: the object is where its spec asks it to be."""
        return self in DONE

    def describe(self) -> str:
        return _DESCRIPTIONS[self]


FAILED = frozenset({Reason.SOURCE_FAILED, Reason.BUILD_FAILED, Reason.CONTRACT_VIOLATION, Reason.LOAD_FAILED,
                    Reason.TRAIN_FAILED, Reason.CRASH_LOOP_BACK_OFF, Reason.SERVE_FAILED, Reason.NOTEBOOK_FAILED,
                    Reason.DEPENDENCY_FAILED})
DONE = frozenset({Reason.BUILT, Reason.BASE_MODEL_READY, Reason.LOADED, Reason.READY, Reason.TRAINED,
                  Reason.SERVING, Reason.RUNNING, Reason.SUSPENDED})
IN_PROGRESS = frozenset(Reason) - FAILED - DONE

_DESCRIPTIONS: dict[Reason, str] = {
    Reason.PENDING: "accepted; nothing has happened yet",
    Reason.BUILDING: "the image is being built or checked against the contract",
    Reason.LOADING: "load.sh is running",
    Reason.TRAINING: "train.sh is running",
    Reason.STARTING: "the server or notebook container is starting",
    Reason.NOT_READY: "the container runs but does not answer its readiness probe (yet, or any more)",
    Reason.ROLLING: "the container is being replaced with one on a new image",
    Reason.SERVER_EXITED: "the server or notebook exited; it is restarted with backoff",
    Reason.WAITING_FOR_DATASET: "the referenced Dataset does not exist or is not ready yet",
    Reason.WAITING_FOR_MODEL: "the referenced Model does not exist or is not ready yet",
    Reason.DELETING: "the object is being deleted; its containers are being removed",
    Reason.SOURCE_FAILED: "the git or dir source could not be resolved",
    Reason.BUILD_FAILED: "the image build failed (message: build log tail; full log in `sub logs`)",
    Reason.CONTRACT_VIOLATION: "the image breaks a contract clause (named in the message)",
    Reason.LOAD_FAILED: "load.sh exited non-zero or wrote nothing at LOAD_DATA_PATH (message: log tail)",
    Reason.TRAIN_FAILED: f"train.sh exited non-zero or left {TRAINED_DIR} empty (message: log tail)",
    Reason.CRASH_LOOP_BACK_OFF: "the server or notebook keeps exiting; restarts continue with growing delays",
    Reason.SERVE_FAILED: "the server never answered its probe within the ready timeout (message: log tail)",
    Reason.NOTEBOOK_FAILED: f"the notebook never answered on port {NOTEBOOK_PORT} within the ready timeout",
    Reason.DEPENDENCY_FAILED: "a referenced object failed (its reason is in the message)",
    Reason.BUILT: "the source image is built and keeps the contract",
    Reason.BASE_MODEL_READY: "the base model named in spec.source.modelName is ready",
    Reason.LOADED: "load.sh wrote the data; status.url points at it",
    Reason.READY: "the model image is ready (status.containerImage)",
    Reason.TRAINED: "train.sh finished and the trained image is built (status.containerImage)",
    Reason.SERVING: f"serve.sh answers {SERVER_READINESS.describe()}; status.url is its base URL",
    Reason.RUNNING: "the notebook answers; status.url opens it",
    Reason.SUSPENDED: "spec.suspend is true: the notebook is stopped",
}
