"""The CLI's own checks, in process: what must fail (or succeed) before any control plane is contacted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from substratus.cli.main import cli

MODEL = """apiVersion: substratus.ai/v1
kind: Model
metadata: {name: local, labels: {app: demo}}
spec: {source: {dir: src/model}}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SUBSTRATUS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def sub(*args: str, stdin: str = "") -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, prog_name="sub")


def test_client_dry_run_reads_stdin_resolves_dir_against_the_cwd_and_contacts_nothing(home: Path) -> None:
    r = sub("apply", "-f", "-", "--dry-run=client", "-o", "yaml", stdin=MODEL)
    assert r.exit_code == 0, r.output
    sent = yaml.safe_load(r.stdout)
    assert sent["spec"]["source"]["dir"] == str(Path.cwd() / "src" / "model")
    assert sent["spec"]["compute"] == {"types": ["CPU"]}, "defaults are filled in"
    assert not home.exists(), "no control plane was started"
    assert sub("apply", "-f", "-", "--dry-run", stdin=MODEL).stdout.strip() == "model/local valid (dry run: client)"


def test_client_dry_run_reports_field_paths_and_exits_1(home: Path) -> None:
    bad = MODEL.replace("spec: {", "spec: {replicas: 2, ").replace("app: demo", "'Bad Key': x")
    r = sub("apply", "-f", "-", "--dry-run=client", stdin=bad)
    assert r.exit_code == 1
    assert "<stdin>: spec.replicas: unknown field" in r.output
    assert "<stdin>: metadata.labels.Bad Key: label key 'Bad Key'" in r.output
    assert not home.exists()


def test_a_self_reference_is_caught_by_the_client_dry_run(home: Path) -> None:
    loop = MODEL.replace("source: {dir: src/model}", "source: {modelName: local}")
    r = sub("apply", "-f", "-", "--dry-run=client", stdin=loop)
    assert r.exit_code == 1 and "cannot refer to itself" in r.output


@pytest.mark.parametrize("args,message", [
    (["apply", "-f", "-", "-f", "-"], "only once"),
    (["apply", "-f", "-", "--dry-run=server", "--wait"], "--wait cannot be used with --dry-run"),
    (["apply", "-f", "-", "--dry-run=later"], "'later' is not one of"),
    (["get", "model", "x", "-l", "app=web"], "NAME or a --selector, not both"),
    (["delete"], "exactly one of"),
    (["delete", "model", "x", "-l", "app=web"], "exactly one of"),
    (["delete", "model", "-f", "m.yaml"], "either KIND NAME or -f FILE"),
    (["completion", "tcsh"], "'tcsh' is not one of"),
])
def test_usage_errors_exit_2_and_contact_nothing(home: Path, args: list[str], message: str) -> None:
    r = sub(*args, stdin=MODEL)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not home.exists()


@pytest.mark.parametrize("args", [["get", "-l", "tier in (a,b"], ["delete", "-l", "app=web,"]])
def test_a_bad_selector_names_the_option_and_contacts_nothing(home: Path, args: list[str]) -> None:
    r = sub(*args)
    assert r.exit_code == 1 and "--selector:" in r.output and "e.g. 'app=web'" in r.output
    assert not home.exists()


@pytest.mark.parametrize("shell,marker", [("bash", "_SUB_COMPLETE=bash_complete"), ("zsh", "#compdef sub"),
                                          ("fish", "complete --no-files --command sub")])
def test_completion_scripts(home: Path, shell: str, marker: str) -> None:
    r = sub("completion", shell)
    assert r.exit_code == 0 and marker in r.stdout


def test_the_cli_module_imports_nothing_heavy() -> None:
    """`sub apply` of an unchanged manifest must start fast: no pydantic, FastAPI, rich or pathspec at import."""
    code = ("import sys, substratus.cli.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'fastapi', 'rich', 'pathspec', "
            "'httpx', 'uvicorn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
