"""`sub verify` against real images: the good shell fixtures pass, each broken one fails its one clause.

The broken fixtures (tests/fixtures/contract/broken/*/fixture.json) name the
clause they break and the words the failure must contain to tell the image
author what to change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.fixtures_verify import (
    GOOD,
    REPO,
    VERIFY,
    VerifyRun,
    prepare_module,
    run_verify,
    verify_all,
    verify_containers,
)

pytestmark = pytest.mark.integration

BROKEN = prepare_module().broken_fixtures()


@pytest.fixture(scope="session")
def verified(engine: str, busybox: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, VerifyRun]:
    return verify_all(tmp_path_factory.mktemp("verify-fixtures"))


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_fixture_passes_every_clause(verified: dict[str, VerifyRun], name: str) -> None:
    run = verified[name]
    assert run.returncode == 0, run.explain()
    assert run.statuses("FAIL") == [] and run.statuses("SKIP") == [], run.explain()
    assert run.report["ok"] is True


def test_good_model_shows_training_params_after_training(verified: dict[str, VerifyRun]) -> None:
    run = verified["model-shell"]
    assert '"trained": null' in run.clause("serve.generate")["evidence"]
    assert '"trained": {"epochs": 1, "batchSize": 2, "dataLimit": 16' in run.clause("train.image")["evidence"]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_fixture_fails_exactly_its_clause(verified: dict[str, VerifyRun], name: str) -> None:
    spec = prepare_module().fixture_spec(name)
    run = verified[name]
    failed = run.clause(spec["breaks"])
    if failed["contract"]:  # a clause the written contract states: FAIL, exit 1
        assert run.returncode == 1, run.explain()
        assert run.statuses("FAIL") == [spec["breaks"]], run.explain()
    else:  # a check beyond the written contract: WARN, the run still passes (see the --strict test)
        assert run.returncode == 0, run.explain()
        assert run.statuses("FAIL") == [] and run.statuses("WARN") == [spec["breaks"]], run.explain()
    assert failed["fix"], f"{name}: the failure says nothing about what to change\n{run.explain()}"
    said = "\n".join((failed["evidence"], failed["fix"], failed["logTail"]))
    for words in spec["mentions"]:
        assert words in said, f"{name}: {words!r} not in the failure:\n{said}"


def test_no_verify_container_is_left(verified: dict[str, VerifyRun], engine: str) -> None:
    assert len(verified) == len(GOOD) + len(BROKEN)
    assert verify_containers(engine) == []


def test_git_source_on_a_branch_and_sub_path(tmp_path: Path, engine: str, busybox: Path) -> None:
    repo = tmp_path / "repo"
    prepare_module().prepare_fixture("dataset-shell", repo / "datasets" / "shell")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(repo)]
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "empty main"],
                 ["checkout", "-q", "-b", "feature"], ["add", "."], ["commit", "-q", "-m", "dataset"],
                 ["checkout", "-q", "main"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    run = run_verify(["dataset", f"file://{repo}", "--path", "datasets/shell", "--branch", "feature",
                      "-o", "json", "--skip", "notebook"])
    assert run.returncode == 0, run.explain()
    assert run.report["source"].startswith(f"git file://{repo} @ feature")
    assert "feature" in run.clause("dockerfile")["evidence"]
    missing = run_verify(["dataset", f"file://{repo}", "--path", "datasets/shell", "-o", "json"])
    assert missing.returncode == 1 and missing.statuses("FAIL") == ["dockerfile"], missing.explain()


def test_existing_image(verified: dict[str, VerifyRun]) -> None:
    image = verified["model-shell"].report["image"]
    run = run_verify(["model", "--image", image, "--skip", "train,schemathesis,notebook", "-o", "json"])
    assert run.returncode == 0, run.explain()
    assert run.clause("dockerfile")["status"] == "SKIP"
    assert run.clause("build")["status"] == "PASS" and run.clause("serve.generate")["status"] == "PASS"
    gone = run_verify(["model", "--image", "localhost/substratus/no-such-image:0", "-o", "json"])
    assert gone.returncode == 1 and gone.statuses("FAIL") == ["build"], gone.explain()


def test_strict_makes_a_warning_a_failure(verified: dict[str, VerifyRun]) -> None:
    image = verified["broken/model-bad-body-500"].report["image"]
    lenient = run_verify(["model", "--image", image, "--skip", "train,schemathesis,notebook", "-o", "json"])
    strict = run_verify(["model", "--image", image, "--skip", "train,schemathesis,notebook", "-o", "json",
                         "--strict"])
    assert lenient.returncode == 0 and lenient.statuses("WARN") == ["serve.bad-body"], lenient.explain()
    assert strict.returncode == 1 and strict.statuses("FAIL") == ["serve.bad-body"], strict.explain()
    assert strict.report["strict"] is True


def test_text_checklist(verified: dict[str, VerifyRun]) -> None:
    image = verified["broken/model-no-docs"].report["image"]
    run = run_verify(["model", "--image", image, "--skip", "train,schemathesis,notebook"])
    assert run.returncode == 1
    assert "  FAIL  serve.docs" in run.stdout and "fix: serve API documentation at GET /docs" in run.stdout
    assert run.stdout.rstrip().endswith("FAILED: 9 passed, 1 failed, 0 warnings, 7 skipped"), run.stdout
    assert "contract: serve.sh endpoints: GET /docs" in run.stdout, "a FAIL names the contract sentence it rests on"
    assert "-> serve.docs" in run.stderr and "-> serve.docs" not in run.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_removes_everything(verified: dict[str, VerifyRun], engine: str, sig: int) -> None:
    image = verified["broken/model-serve-wrong-port"].report["image"]
    proc = subprocess.Popen([*VERIFY, "model", "--image", image, "--serve-timeout", "120", "--skip", "train"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if "-> serve.listen" in line or time.monotonic() > deadline:
            break
    up = time.monotonic() + 60
    while not verify_containers(engine) and time.monotonic() < up:  # the server container is being started
        time.sleep(0.2)
    time.sleep(1.0)  # and polled
    assert verify_containers(engine), "the serve container should be running now"
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "INTERRUPTED" in out and "not checked: interrupted" in out
    assert verify_containers(engine) == []
