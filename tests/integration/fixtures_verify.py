"""Helpers for the `sub verify` integration tests: assemble fixtures, run the CLI, read its JSON.

Every fixture (good and broken) is verified once per session, a few at a time,
and the tests then read the reports; that keeps the whole tier to a couple of
minutes. The CLI runs as a subprocess exactly as a user runs it
(`python -m substratus.cli.verify_cmd`, which is what `sub verify` calls).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
PREPARE = REPO / "tests" / "fixtures" / "contract" / "prepare.py"
VERIFY = [sys.executable, "-m", "substratus.cli.verify_cmd"]
GOOD = {"model-shell": "model", "dataset-shell": "dataset"}


def prepare_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contract_fixture_prepare", PREPARE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class VerifyRun:
    name: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def clause(self, clause_id: str) -> dict[str, Any]:
        return next(c for c in self.report["clauses"] if c["id"] == clause_id)

    def statuses(self, status: str) -> list[str]:
        return [c["id"] for c in self.report["clauses"] if c["status"] == status]

    def explain(self) -> str:
        return f"verify {' '.join(self.args)} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr tail:\n" + \
            "\n".join(self.stderr.splitlines()[-40:])


def run_verify(args: list[str], *, name: str = "", timeout: float = 900, cwd: Optional[Path] = None) -> VerifyRun:
    proc = subprocess.run([*VERIFY, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
                          stdin=subprocess.DEVNULL)
    return VerifyRun(name, args, proc.returncode, proc.stdout, proc.stderr)


def verify_all(workdir: Path, *, workers: int = 3) -> dict[str, VerifyRun]:
    """Assemble and verify every contract fixture; name -> its run (JSON output)."""
    prepare = prepare_module()
    jobs: dict[str, list[str]] = {}
    for name, kind in GOOD.items():
        ctx = prepare.prepare_fixture(name, workdir / name)
        jobs[name] = [kind, str(ctx), "-o", "json"]
    for name in prepare.broken_fixtures():
        spec = prepare.fixture_spec(name)
        ctx = prepare.prepare_fixture(name, workdir / name.replace("/", "-"))
        jobs[name] = [spec["kind"], str(ctx), "-o", "json", *spec.get("args", [])]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_verify, args, name=name) for name, args in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def verify_containers(engine: str) -> list[str]:
    """Names of containers labelled as started by `sub verify` (there should be none after a run)."""
    out = subprocess.run([engine, "ps", "-a", "--filter", "label=substratus.ai/role=verify", "--format",
                          "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()
