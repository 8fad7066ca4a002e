"""The reliability tier (`make test-reliability`): figures a user of an orchestrator expects.

Black-box on purpose (the real `sub`, daemon, HTTP API and engine), so the figures survive
rewrites of the control plane's core. Each test module adds its figure to `figures`; the
tier prints the four of them at the end (and writes them as JSON to
$SUBSTRATUS_RELIABILITY_FIGURES when set). Needs podman or docker, like the integration tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from substratus.reconcile.layout import Layout
from tests.integration.conftest import busybox, engine, runtime  # noqa: F401  (shared fixtures)

FIGURES = pytest.StashKey[dict[str, Any]]()
TITLES = {
    "bad_inputs": "Bad inputs refused",
    "kill9": "kill -9 trials",
    "concurrent_applies": "Concurrent `sub apply`",
    "schemathesis": "schemathesis on /openapi.json",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = {}


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> dict[str, Any]:
    return pytestconfig.stash[FIGURES]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(FIGURES, {})
    if not found:
        return
    terminalreporter.section("reliability figures")
    for key, title in TITLES.items():
        if key in found:
            terminalreporter.write_line(f"{title:<32} {found[key]['summary']}")
    out = os.environ.get("SUBSTRATUS_RELIABILITY_FIGURES")
    if out:
        Path(out).write_text(json.dumps(found, indent=2) + "\n")


def instance_of(home: Path) -> str:
    return Layout(home.resolve()).instance


def engine_lines(argv: list[str]) -> list[str]:
    """Output lines of an engine listing; retried, since a neighbour removing an image at the same
    moment can make podman's listing fail (exit 125) on a shared storage."""
    for attempt in range(5):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout.split()
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr}")


def containers_of(engine: str, instance: str) -> list[str]:
    return sorted(engine_lines([engine, "ps", "-a", "--format", "{{.Names}}", "--filter",
                                f"label=substratus.ai/instance={instance}"]))


def images_with(engine: str, word: str) -> list[str]:
    """Tags of images whose repository holds `word` (object images are named kind-namespace-name)."""
    tags = engine_lines([engine, "images", "--format", "{{.Repository}}:{{.Tag}}"])
    return sorted(t for t in tags if word in t.split(":")[0])


def remove_images(engine: str, tags: list[str]) -> None:
    if tags:
        subprocess.run([engine, "rmi", "-f", "--", *tags], capture_output=True)
