"""The one table from exceptions to HTTP status codes, and the JSON error body.

The CLI turns the body (`{"error": {"type", "message", "hint", "problems"}}`)
back into the same message a person would have seen locally.
"""

from __future__ import annotations

import json
from typing import Any

from substratus.errors import (
    ConflictError,
    ControlPlaneError,
    EngineError,
    NotFoundError,
    SourceError,
    SubstratusError,
    Unauthorized,
    ValidationError,
)

STATUS_FOR: list[tuple[type[SubstratusError], int]] = [
    (Unauthorized, 401),
    (ValidationError, 422),
    (SourceError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (EngineError, 503),
    (ControlPlaneError, 502),
    (SubstratusError, 500),
]

TYPES: dict[str, type[SubstratusError]] = {cls.__name__: cls for cls, _ in STATUS_FOR}


def status_for(err: SubstratusError) -> int:
    return next(code for cls, code in STATUS_FOR if isinstance(err, cls))


def error_body(err: SubstratusError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(err).__name__, "message": err.message, "hint": err.hint}
    if isinstance(err, ValidationError):
        body["problems"] = [{"field": f, "message": m} for f, m in err.problems]
    return {"error": body}


def error_from_body(body: dict[str, Any]) -> SubstratusError:
    """Rebuild the exception on the client side."""
    e = body.get("error") or {}
    if not e and "detail" in body:  # a framework answer (404, 405...): say what it said
        detail = body["detail"]
        return SubstratusError(detail if isinstance(detail, str) else json.dumps(detail)[:500])
    cls = TYPES.get(e.get("type", ""), SubstratusError)
    if cls is ValidationError:
        return ValidationError([(p.get("field", ""), p.get("message", "")) for p in e.get("problems", [])],
                               hint=e.get("hint", ""))
    return cls(e.get("message", "unknown error"), hint=e.get("hint", "")) if cls is not SourceError \
        else SourceError(e.get("message", ""), hint=e.get("hint", ""))
