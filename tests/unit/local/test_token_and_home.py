"""Holes 2 and 3 of issue 7: no empty or short token, no empty Authorization, private files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from substratus.api.app import MIN_TOKEN_LENGTH, check_bearer, create_app
from substratus.api.daemon import ensure_token
from substratus.local.controller import Controller
from substratus.local.privatefiles import secure_home, write_private
from substratus.local.service import ControlPlane
from substratus.local.store import Store
from substratus.reconcile.layout import Layout
from substratus.runtimes.fake import FakeRuntime


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("content", ["", "\n", "short", "x" * 31, "has space in it " * 4])
def test_an_empty_short_or_malformed_token_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(0o644)
    token = ensure_token(path)
    assert len(token) >= MIN_TOKEN_LENGTH and " " not in token
    assert path.read_text() == token and mode(path) == 0o600


def test_a_good_token_is_kept_and_made_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("k" * 40 + "\n")
    path.chmod(0o644)
    assert ensure_token(path) == "k" * 40 and mode(path) == 0o600


def test_a_new_token_is_written_whole_and_private(tmp_path: Path) -> None:
    token = ensure_token(tmp_path / "token")
    assert len(token) >= MIN_TOKEN_LENGTH and mode(tmp_path / "token") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"], "no temporary file is left behind"


def test_a_token_link_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("e" * 40)
    (tmp_path / "token").symlink_to(tmp_path / "elsewhere")
    token = ensure_token(tmp_path / "token")
    assert token != "e" * 40 and not (tmp_path / "token").is_symlink()


def test_the_app_refuses_a_short_token() -> None:
    with pytest.raises(ValueError):
        create_app(None, "")  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Bearer  ", "Basic " + "t" * 43, "t" * 43,
                                    "Bearer " + "t" * 42, "Bearer " + "u" * 43])
def test_anything_but_the_exact_bearer_token_is_refused(header: str | None) -> None:
    assert not check_bearer(header, "t" * 43)
    assert not check_bearer(header, "")


def test_api_answers_401_to_an_empty_authorization(tmp_path: Path) -> None:
    rt = FakeRuntime()
    layout = Layout(tmp_path / "home")
    store = Store(layout.db)
    app = create_app(ControlPlane(store, rt, layout, Controller(store, rt, layout, workers=0, executor_workers=0)),
                     "t" * 43)
    client = TestClient(app)
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer "}):
        resp = client.get("/api/v1/objects", headers=headers)
        assert resp.status_code == 401 and "token" in resp.json()["error"]["message"]
    assert client.get("/api/v1/objects", headers={"Authorization": "Bearer " + "t" * 43}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_secure_home_makes_an_old_home_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    for name in ("state.db", "token", "controlplane.log"):
        (home / name).write_text("x")
        (home / name).chmod(0o644)
    secure_home(home)
    assert mode(home) == 0o700
    assert all(mode(home / n) == 0o600 for n in ("state.db", "token", "controlplane.log"))
    fresh = tmp_path / "a" / "b"
    old = os.umask(0o022)
    try:
        secure_home(fresh)
    finally:
        os.umask(old)
    assert mode(fresh) == 0o700


def test_write_private_is_0600_under_any_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", "data")
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600 and (tmp_path / "f").read_text() == "data"
