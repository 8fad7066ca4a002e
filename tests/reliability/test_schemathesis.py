"""Figure 4: schemathesis, driven by the control plane's own /openapi.json and authorised with
its token, finds no server error (no 5xx) in any phase it can run (coverage, fuzzing, stateful).

`GET /api/v1/watch` is left out: a watch streams until its client leaves (or `timeoutSeconds`),
so every generated call would last until schemathesis' request timeout; its bad parameters are
among the bad-input cases instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Sub, cleanup

EXAMPLES = 20


@pytest.fixture
def plane(tmp_path: Path, engine: str) -> Iterator[Sub]:
    sub = Sub(tmp_path / "home")
    sub.ok("up")
    yield sub
    cleanup(sub, engine)


@pytest.mark.timeout(900)
def test_schemathesis_finds_no_server_error(plane: Sub, tmp_path: Path, figures: dict[str, Any]) -> None:
    ep = json.loads((plane.home / "controlplane.json").read_text())
    token = (plane.home / "token").read_text().strip()
    report = tmp_path / "schemathesis.json"
    st = str(Path(sys.executable).with_name("schemathesis"))
    proc = subprocess.run([st, "run", f"{ep['url']}/openapi.json", "-H", f"Authorization: Bearer {token}",
                           "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing,stateful",
                           "--max-examples", str(EXAMPLES), "--request-timeout", "30",
                           "--exclude-path", "/api/v1/watch",
                           "--report", "json", "--report-json-path", str(report)],
                          capture_output=True, text=True, timeout=850, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    data = json.loads(report.read_text())
    cases = int(data["test_cases"]["generated"])
    assert data["test_cases"]["with_failures"] == 0 and data["failures"] in ([], {}, 0, None), data["failures"]
    assert data["operations"]["tested"] == data["operations"]["selected"] >= 7
    log = (plane.home / "controlplane.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    figures["schemathesis"] = {"calls": cases, "server_errors": 0, "operations": data["operations"]["tested"],
                               "seed": data.get("seed"),
                               "summary": f"{cases} generated calls over {data['operations']['tested']} operations "
                                          f"(coverage, fuzzing, stateful phases): 0 5xx"}
