"""`sub verify` as a click command: arguments, exit codes, stdout vs stderr (fake runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from substratus.cli.verify_cmd import verify
from substratus.runtimes import engine
from substratus.verify import runner
from tests.unit.fakes.verify import ContractRuntime, FakeServer, deps, model_dir


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> ContractRuntime:
    """The CLI builds its runtime from the engine module and its Deps from runner: swap both."""
    rt = ContractRuntime()
    monkeypatch.setattr(engine, "detect_engine", lambda preferred=None: "fake")
    monkeypatch.setattr(engine, "EngineRuntime", lambda name: rt)
    monkeypatch.setattr(runner, "Deps", lambda: deps(FakeServer()))
    return rt


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(verify, list(args), catch_exceptions=False)


@pytest.mark.parametrize("args,message", [
    (["model"], "give a SOURCE"),
    (["model", ".", "--image", "x"], "not both"),
    (["model", "--image", "x", "--branch", "main"], "do not go with --image"),
    (["model", "/no/such/dir"], "is not a directory"),
    (["model", ".", "--skip", "serve,lunch"], "unknown group(s) lunch"),
    (["dataset", ".", "--data", __file__], "--data is training data"),
    (["widget", "."], "Invalid value for '{model|dataset}'"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_json_on_stdout_progress_on_stderr(fake: ContractRuntime, tmp_path: Path) -> None:
    result = CliRunner().invoke(verify, ["model", str(model_dir(tmp_path / "m")), "-o", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["kind"] == "Model"
    assert "-> serve.generate" in result.stderr and "-> serve.generate" not in result.stdout


def test_failure_exits_1_with_a_checklist(fake: ContractRuntime, tmp_path: Path) -> None:
    result = CliRunner().invoke(verify, ["dataset", str(model_dir(tmp_path / "d", "/srv")), "--skip", "notebook"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert "  FAIL  workdir" in result.stdout and "fix: add `WORKDIR /dataset`" in result.stdout
    assert "  SKIP  notebook.listen" in result.stdout and "skipped with --skip notebook" in result.stdout


def test_quiet_keeps_stderr_empty(fake: ContractRuntime, tmp_path: Path) -> None:
    result = CliRunner().invoke(verify, ["dataset", str(model_dir(tmp_path / "d", "/dataset")), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 0 and result.stderr == ""


def test_no_engine_exits_1_with_the_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from substratus.errors import EngineError

    def missing(preferred=None):  # type: ignore[no-untyped-def]
        raise EngineError("no working container engine", hint="run `make setup`")

    monkeypatch.setattr(engine, "detect_engine", missing)
    result = CliRunner().invoke(verify, ["model", str(model_dir(tmp_path / "m"))])
    assert result.exit_code == 1 and "run `make setup`" in result.stderr
