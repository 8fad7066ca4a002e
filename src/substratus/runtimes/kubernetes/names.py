"""Object names and label values that Kubernetes accepts, made from the local ones.

The planners name containers `sub-<instance>-<kind>-<ns>-<name>-<role>-<key>`
and label them with values such as an image reference (`localhost/x:tag`).
Kubernetes wants names that are DNS-1123 labels of at most 63 characters and
label values without `/` or `:`. Both mappings here are deterministic, so the
runtime finds an object again from the planner's name or labels alone; the
original label values travel in annotations of the same key and are given
back by `decode_labels`.
"""

from __future__ import annotations

import hashlib
import re

NAME_MAX = 63
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
HASHED_PREFIX = "sha256-"


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def object_name(name: str, *, max_len: int = NAME_MAX) -> str:
    """A DNS-1035 label (valid for Pods, Jobs and Services) standing for `name`.

    Valid, short names are kept as they are; anything else is lower-cased,
    stripped of other characters, cut, and given a hash of the original so two
    long names that share a prefix stay apart.
    """
    if len(name) <= max_len and _DNS_LABEL.match(name):
        return name
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "x"
    if not clean[0].isalpha():
        clean = "s-" + clean
    return f"{clean[:max_len - 11].rstrip('-')}-{_digest(name, 10)}"


def child_name(parent: str, suffix: str) -> str:
    """`parent-suffix`, still at most 63 characters (e.g. a notebook's Secret)."""
    return object_name(f"{parent}-{suffix}")


def label_value(value: str) -> str:
    """`value` if Kubernetes accepts it as a label value, else a stable hash of it."""
    if len(value) <= NAME_MAX and _LABEL_VALUE.match(value):
        return value
    return HASHED_PREFIX + _digest(value, 40)


def encode_labels(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels Kubernetes accepts, annotations keeping the values that had to be hashed)."""
    out, kept = {}, {}
    for key, value in labels.items():
        encoded = label_value(value)
        out[key] = encoded
        if encoded != value:
            kept[key] = value
    return out, kept


def decode_labels(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, str]:
    """The planner's labels back: hashed values replaced by the annotation they stand for."""
    out = dict(labels)
    for key, value in labels.items():
        original = annotations.get(key)
        if original is not None and value.startswith(HASHED_PREFIX) and label_value(original) == value:
            out[key] = original
    return out


def selector(labels: dict[str, str]) -> str:
    """A labelSelector string for `labels` (values encoded as on the objects)."""
    return ",".join(f"{k}={label_value(v)}" for k, v in sorted(labels.items()))
