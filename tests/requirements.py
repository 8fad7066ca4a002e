"""Skipping for a missing prerequisite, except in CI, where it is a failure.

On a developer's machine a test that needs podman or a base image says what is
missing and skips. With `CI` set (`.ci/run`), the same absence fails the run:
CI installs everything, so a skip there would hide a broken set-up.
"""

from __future__ import annotations

import os

import pytest


def require(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set: a missing prerequisite fails instead of skipping)", pytrace=False)
    pytest.skip(what)
