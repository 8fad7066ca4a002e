"""Kind names as people type them: `models`, `server`, `ModelServer`, `nb`..."""

from __future__ import annotations

from substratus.errors import ValidationError

_ALIASES = {
    "Dataset": ["dataset", "datasets", "ds"],
    "Model": ["model", "models", "mo"],
    "ModelServer": ["modelserver", "modelservers", "server", "servers", "svr"],
    "Notebook": ["notebook", "notebooks", "nb"],
}
_LOOKUP = {alias: kind for kind, aliases in _ALIASES.items() for alias in aliases}
KIND_ORDER = ["Dataset", "Model", "ModelServer", "Notebook"]


def canonical_kind(text: str, *, field: str = "kind") -> str:
    """`servers` -> `ModelServer`; raises ValidationError naming `field` otherwise."""
    kind = _LOOKUP.get(text.strip().lower())
    if kind is None:
        known = ", ".join(KIND_ORDER)
        raise ValidationError(
            [(field, f"unknown kind {text!r}: expected one of {known} (also Server, plural and lower-case forms)")]
        )
    return kind
