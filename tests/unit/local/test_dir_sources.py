"""Hole 7 of issue 7: special files and stray links in a `dir` source are refused with the
path named (a 422 through the API), never a hang while `apply` holds its lock, never a 500."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from substratus.api.app import create_app
from substratus.errors import SourceError
from substratus.local.controller import Controller
from substratus.local.service import ControlPlane
from substratus.local.store import Store
from substratus.reconcile.layout import Layout
from substratus.runtimes.fake import FakeRuntime
from substratus.sources import local

TOKEN = "t" * 43


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
    (src / "sub" / "file.txt").write_text("ok\n")
    return src


def make_fifo(p: Path) -> None:
    os.mkfifo(p)


def make_socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


BAD = {
    "fifo": (make_fifo, "named pipe (FIFO)"),
    "socket": (make_socket, "a socket"),
    "dangling-link": (lambda p: p.symlink_to("does-not-exist"), "dangling"),
    "link-outside": (lambda p: p.symlink_to("/etc/passwd"), "points outside"),
    "relative-link-outside": (lambda p: p.symlink_to("../../outside"), "points outside"),
    "dir-link-outside": (lambda p: p.symlink_to("/etc"), "points outside"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_entries_are_refused_naming_the_path(tmp_path: Path, case: str) -> None:
    src = source(tmp_path)
    (tmp_path / "outside").write_text("secret\n")
    make, words = BAD[case]
    make(src / "sub" / "bad")
    with pytest.raises(SourceError) as e:
        local.snapshot(str(src), tmp_path / "cache")
    assert f"{src}/sub/bad" in e.value.message and words in e.value.message
    assert e.value.field == "spec.source.dir"
    assert not (tmp_path / "cache").exists(), "nothing is copied from a refused source"


def test_links_inside_the_source_are_kept(tmp_path: Path) -> None:
    src = source(tmp_path)
    (src / "link").symlink_to("sub/file.txt")
    (src / "dirlink").symlink_to("sub")
    got = local.snapshot(str(src), tmp_path / "cache")
    assert (got.context / "link").is_symlink() and (got.context / "dirlink").is_symlink()


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    rt = FakeRuntime()
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    rec = Controller(store, rt, layout, workers=0, executor_workers=0)
    return TestClient(create_app(ControlPlane(store, rt, layout, rec), TOKEN))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["fifo", "dangling-link", "link-outside"])
def test_api_answers_422_naming_the_path_and_stores_nothing(client: TestClient, tmp_path: Path, case: str) -> None:
    src = source(tmp_path)
    BAD[case][0](src / "bad")
    doc = {"apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "m"},
           "spec": {"source": {"dir": str(src)}}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    resp = client.post("/api/v1/apply", json={"objects": [doc]}, headers=headers)
    assert resp.status_code == 422, resp.text
    problem = resp.json()["error"]["problems"][0]
    assert problem["field"] == "model/m: spec.source.dir" and f"{src}/bad" in problem["message"]
    assert client.get("/api/v1/objects", headers=headers).json()["items"] == []
