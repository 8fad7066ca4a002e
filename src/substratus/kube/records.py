"""Where the operator keeps an object's typed state on the cluster, and how it reads it back.

The local control plane keeps `reconcile.state` records in SQLite. On a
cluster they live in the annotation `substratus.ai/state` of the custom
resource itself (JSON), for three reasons: the CRD's `status` schema is the
published one (pruned to resources.status, users read it), the state must
survive the operator's restarts, and it must travel with the object (deleted
with it, never shared). The annotation holds

    {"for": "<generation>|<sub apply annotations>", "state": {...}, "sourceError": "...", "token": true}

`for` is the apply the state belongs to (annotations.apply_trigger): when the
object is applied again (its spec changed, or `sub apply` re-annotated it),
the operator resolves the source again and forgets failures, exactly what a
re-apply does locally. A token (a notebook's, an exposed server's) never goes
into an annotation: it is kept in a Secret owned by the resource
(`<name>-<kind>-token`, key `token`), and `"token": true` says to read it.

Pure functions, no API calls: the reconciler does the reading and writing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Optional

from substratus.reconcile import state as states
from substratus.runtimes.kubernetes import names
from substratus.runtimes.kubernetes.annotations import STATE, annotations_of, apply_trigger
from substratus.runtimes.kubernetes.workloads import MANAGED_BY, Owner

TOKEN_KEY = "token"


@dataclass(frozen=True)
class Stored:
    """The state annotation, decoded."""

    trigger: str = ""
    state: dict[str, Any] | None = None
    source_error: str = ""
    has_token: bool = False

    @classmethod
    def read(cls, body: dict[str, Any]) -> "Stored":
        text = annotations_of(body).get(STATE)
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()  # unreadable (edited by hand): start afresh, as for a new object
        if not isinstance(data, dict):
            return cls()
        return cls(trigger=str(data.get("for", "")), state=data.get("state") or {},
                   source_error=str(data.get("sourceError", "")), has_token=bool(data.get("token")))


def encode(trigger: str, state: states.AnyState, source_error: str = "") -> tuple[str, Optional[str]]:
    """(annotation text, token to keep in the Secret or None). The text never holds the token."""
    data = states.dump(state)
    token = data.pop("token", None)
    out: dict[str, Any] = {"for": trigger, "state": data}
    if source_error:
        out["sourceError"] = source_error
    if token:
        out["token"] = True
    return json.dumps(out, sort_keys=True, separators=(",", ":")), token


def decode(kind: str, stored: Stored, token: Optional[str]) -> states.AnyState:
    data = dict(stored.state or {})
    if token:
        data["token"] = token
    return states.load(kind, data)


def is_current(stored: Stored, body: dict[str, Any]) -> bool:
    """Whether the stored state belongs to the object as it is applied now."""
    return stored.state is not None and stored.trigger == apply_trigger(body)


def token_secret_name(kind: str, name: str) -> str:
    return names.object_name(f"{name}-{kind.lower()}-token")


def token_secret(kind: str, name: str, namespace: str, token: str, owner: Owner) -> dict[str, Any]:
    """The Secret holding an object's token; owned by the object, so deleting it deletes the token."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": token_secret_name(kind, name), "namespace": namespace,
                         "labels": {**MANAGED_BY}, "ownerReferences": [owner.reference()]},
            "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()}}


def token_from_secret(secret: Optional[dict[str, Any]]) -> Optional[str]:
    value = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
    return base64.b64decode(value).decode() if value else None
