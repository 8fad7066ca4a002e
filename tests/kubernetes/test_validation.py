"""Validation tier: every object `sub kube install` and the generators can produce passes
the official schemas in strict mode (unknown fields refused) on several Kubernetes versions.

VERSIONS: 1.35 is the oldest minor the Kubernetes project still supports on 2026-11-27
(it supports the newest three: 1.35, 1.36, 1.37); 1.30 is the oldest we claim to run on
(`appArmorProfile` in securityContext, native sidecars); 1.37 is the newest schema bundled.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.kubernetes.catalogue import everything

VERSIONS = ("1.30.0", "1.35.0", "1.36.0", "1.37.0")
OBJECTS = everything()


def test_the_catalogue_covers_every_kind_generated() -> None:
    kinds = {o["kind"] for _, o in OBJECTS}
    assert kinds == {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                     "Role", "RoleBinding", "ConfigMap", "Deployment", "Job", "Service", "Secret", "Pod"}
    assert len(OBJECTS) > 60


@pytest.mark.parametrize("version", VERSIONS)
def test_strictly_valid(version: str) -> None:
    problems = []
    for what, obj in OBJECTS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{what}: {err.message} at {'.'.join(str(p) for p in err.path)}")
    assert problems == []


def test_a_mistake_is_caught() -> None:
    """The validator is not a rubber stamp: a misspelt field in a generated pod is refused."""
    _, job = next((w, o) for w, o in OBJECTS if o["kind"] == "Job")
    broken: dict[str, Any] = {**job, "spec": {**job["spec"], "backofLimit": 0}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
