"""The apply that `sub` hands to the control plane it starts (`api.daemon.FirstApply`), and the
client's side of it: the answer is the body the API would have sent, on a pipe only `sub` holds."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from substratus.api.daemon import FirstApply, SettingsError, parse_args
from substratus.cli.client import read_until_eof
from substratus.errors import ControlPlaneError, ValidationError
from substratus.local.privatefiles import write_private


class FakePlane:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.got: list[list[Any]] = []

    def apply_documents(self, objects: list[Any], *, dry_run: bool = False) -> Any:
        self.got.append(objects)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def run(tmp_path: Path, request: Any, plane: FakePlane) -> dict[str, Any]:
    path = tmp_path / ".first-apply-x.json"
    write_private(path, json.dumps(request))
    r, w = os.pipe()
    FirstApply(path, w).run(plane)  # type: ignore[arg-type]
    with open(r, "rb") as pipe:
        answer = dict(json.loads(pipe.read()))
    assert not path.exists(), "the request file is removed once read"
    return answer


def test_the_answer_is_what_the_api_would_have_sent(tmp_path: Path) -> None:
    results = [{"kind": "Model", "namespace": "default", "name": "m", "result": "created", "generation": 1}]
    plane = FakePlane(results)
    doc = {"apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "m"}}
    assert run(tmp_path, {"objects": [doc]}, plane) == {"status": 200, "body": results}
    assert plane.got == [[doc]]


def test_a_large_apply_is_read_whole(tmp_path: Path) -> None:
    """1,001 objects: a request far beyond the small files (tokens) the home otherwise holds."""
    docs = [{"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": f"nb-{i}"},
             "spec": {"modelName": "base", "suspend": True}} for i in range(1001)]
    plane = FakePlane([])
    assert run(tmp_path, {"objects": docs}, plane)["status"] == 200
    assert plane.got == [docs]


def test_a_refused_apply_answers_the_apis_status_and_error_body(tmp_path: Path) -> None:
    plane = FakePlane(ValidationError([("objects[0]: spec.modelName", "no such model")], hint="nothing was applied"))
    answer = run(tmp_path, {"objects": [{}]}, plane)
    assert answer["status"] == 422
    assert answer["body"]["error"]["problems"] == [{"field": "objects[0]: spec.modelName", "message": "no such model"}]
    assert answer["body"]["error"]["hint"] == "nothing was applied"


def test_an_unexpected_failure_is_a_500_not_a_silent_pipe(tmp_path: Path) -> None:
    answer = run(tmp_path, {"objects": []}, FakePlane(RuntimeError("boom")))
    assert answer["status"] == 500 and "boom" in answer["body"]["error"]["message"]


def test_a_request_without_objects_is_refused_without_applying(tmp_path: Path) -> None:
    plane = FakePlane([])
    answer = run(tmp_path, {"things": 1}, plane)
    assert answer["status"] == 422
    assert answer["body"]["error"]["problems"][0]["field"] == "objects"
    assert plane.got == []


def test_a_sub_that_went_away_leaves_the_apply_applied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / ".first-apply-x.json"
    write_private(path, json.dumps({"objects": [{"kind": "Model"}]}))
    r, w = os.pipe()
    os.close(r)
    plane = FakePlane([{"result": "created"}])
    FirstApply(path, w).run(plane)  # type: ignore[arg-type]
    assert plane.got == [[{"kind": "Model"}]]
    assert "could not answer the first apply" in caplog.text


@pytest.mark.parametrize("argv", [["--first-apply", "f"], ["--answer-fd", "3", "--first-apply", "f"],
                                  ["--first-apply", "f", "--answer-fd", "x"], ["serve"]])
def test_the_daemon_refuses_arguments_it_does_not_know(argv: list[str]) -> None:
    with pytest.raises(SettingsError, match="unexpected arguments"):
        parse_args(argv)


def test_the_daemon_reads_its_hand_over_arguments() -> None:
    assert parse_args([]) is None
    assert parse_args(["--first-apply", "/h/r.json", "--answer-fd", "7"]) == FirstApply(Path("/h/r.json"), 7)


def test_the_client_reads_the_whole_answer_until_the_writer_closes() -> None:
    r, w = os.pipe()
    big = b"x" * 300_000  # more than a pipe holds: written in pieces while read

    def write() -> None:
        time.sleep(0.05)
        os.write(w, big[:100_000])
        os.write(w, big[100_000:])
        os.close(w)

    threading.Thread(target=write).start()
    with open(r, "rb") as pipe:
        assert read_until_eof(pipe, 10) == big


def test_the_client_gives_up_on_a_daemon_that_never_answers() -> None:
    r, w = os.pipe()
    try:
        with open(r, "rb") as pipe, pytest.raises(ControlPlaneError, match="did not answer within"):
            read_until_eof(pipe, 0.2)
    finally:
        os.close(w)


@pytest.mark.parametrize("command", ["apply", "get"])
def test_a_control_plane_that_cannot_start_says_why_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            command: str) -> None:
    """No engine: the daemon prints the error and exits 3; `sub` shows it at once (it used to wait for
    its 30 s start-up timeout, the daemon's exit looking like a lost race for the lock)."""
    from substratus.cli.client import Client

    monkeypatch.setenv("SUBSTRATUS_ENGINE", "no-such-engine-here")
    client = Client(tmp_path / "home")
    started = time.monotonic()
    with pytest.raises(ControlPlaneError) as caught:
        if command == "apply":
            client.apply([{"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": "nb"}}])
        else:
            client.list()
    assert time.monotonic() - started < 15
    text = str(caught.value)
    assert "exited with code 3" in text and "SUBSTRATUS_ENGINE='no-such-engine-here' is not on PATH" in text, text
    assert "Traceback" not in text and "fix what the error above names" in text
    assert not list((tmp_path / "home").glob(".first-apply-*"))
