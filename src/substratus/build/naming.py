"""Content-addressed names and the labels on everything the system creates.

Pure functions: the same inputs always give the same image tag or container
name, which is what makes re-applying an unchanged manifest a no-op and a
changed one a rebuild of exactly what depends on the change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from substratus.runtimes.base import LABEL_PREFIX, MANAGED

IMAGE_REPO = "localhost/substratus"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def digest(*parts: Any) -> str:
    raw = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def source_image(kind: str, namespace: str, name: str, revision: str, path: str) -> str:
    h = digest("source", kind, namespace, name, revision, path)[:16]
    return f"{IMAGE_REPO}/{kind.lower()}-{namespace}-{name}:{h}"


def trained_image(namespace: str, name: str, train_key: str) -> str:
    return f"{IMAGE_REPO}/model-{namespace}-{name}:trained-{train_key[:16]}"


def container_name(kind: str, namespace: str, name: str, role: str, key: str = "", instance: str = "") -> str:
    """`instance` (one per $SUBSTRATUS_HOME) keeps two control planes on one engine apart; a hash of
    (kind, namespace, name) keeps `ns a-b / name c` apart from `ns a / name b-c`."""
    prefix = f"sub-{instance}" if instance else "sub"
    owner = digest("owner", kind, namespace, name)[:6]
    base = f"{prefix}-{kind.lower()}-{name}-{role}-{owner}"
    return f"{base}-{key[:10]}" if key else base


def object_labels(kind: str, namespace: str, name: str, instance: str = "", **extra: str) -> dict[str, str]:
    labels = {MANAGED: "true", LABEL_PREFIX + "kind": kind, LABEL_PREFIX + "namespace": namespace,
              LABEL_PREFIX + "name": name}
    if instance:
        labels[LABEL_PREFIX + "instance"] = instance
    labels.update({LABEL_PREFIX + k: v for k, v in extra.items()})
    return labels


def label(key: str) -> str:
    return LABEL_PREFIX + key
