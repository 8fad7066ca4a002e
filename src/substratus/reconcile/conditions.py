"""The `Ready` condition of a status as it travels (a plain dict: JSON from the API, a store record,
a watch event), for whoever reads statuses without parsing them: `sub get` (which must start in a
blink, so this module imports nothing), the dashboard, `sub apply` against a cluster, and the
dependency index of both backends. `resources.status.Status.condition` is the parsed form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

READY = "Ready"


def ready_condition(status: Mapping[str, Any]) -> dict[str, Any]:
    """The `Ready` condition of a wire-form status, `{}` when it has none."""
    for c in status.get("conditions") or ():
        if isinstance(c, dict) and c.get("type") == READY:
            return c
    return {}


def ready_reason(status: Mapping[str, Any], default: str = "") -> str:
    """The `Ready` condition's reason (what `sub get` shows in its REASON column)."""
    return str(ready_condition(status).get("reason", default))
