"""An object's `status` from a plan: conditions with Kubernetes transition times, and what
the object publishes. Shared by both backends."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from substratus.reconcile.plan import Plan
from substratus.resources.status import Condition, ConditionStatus, Reason, Status, merge_conditions


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_status(generation: int, previous: dict[str, Any], plan: Plan, now: str) -> dict[str, Any]:
    """The status of an object at `generation` from a plan: conditions (with Kubernetes transition times,
    carried over from the `previous` status where a condition did not flip) and what it publishes."""
    old = Status.model_validate(previous)
    ready_status: ConditionStatus = "True" if plan.ready else \
        "False" if plan.reason.failed or plan.reason is Reason.SUSPENDED else "Unknown"
    steps = [*plan.conditions, Condition(type="Ready", status=ready_status, reason=plan.reason.value,
                                         message=plan.message)]
    status = plan.published.model_copy(update={"ready": plan.ready, "observed_generation": generation,
                                               "conditions": merge_conditions(old.conditions, steps, now)})
    return status.wire()
