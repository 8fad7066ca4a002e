"""API keys: shown once, hashed at rest in a 0600 file, revocable, checked by any process."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from substratus.errors import ConflictError, NotFoundError, ValidationError
from substratus.gateway.keys import KEY_PREFIX, KeyStore


def test_a_created_key_verifies_and_is_not_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "gw")
    made = store.create("laptop")
    assert made.key.startswith(KEY_PREFIX) and len(made.key) > 40
    assert store.verify(made.key) == "laptop"
    text = (tmp_path / "gw" / "keys.json").read_text()
    assert made.key not in text and made.key[len(made.prefix):] not in text
    assert json.loads(text)["keys"][0]["name"] == "laptop"


def test_the_file_and_directory_are_private(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "gw")
    store.create("laptop")
    assert stat.S_IMODE((tmp_path / "gw" / "keys.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "gw").stat().st_mode) == 0o700


def test_wrong_keys_do_not_verify(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    made = store.create("laptop")
    assert store.verify(made.key + "x") is None
    assert store.verify(made.key[:-1]) is None
    assert store.verify("") is None
    assert KeyStore(tmp_path / "empty").verify(made.key) is None


def test_list_shows_names_times_and_prefixes_only(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    a, b = store.create("laptop"), store.create("ci")
    listed = store.list()
    assert [k.name for k in listed] == ["laptop", "ci"]
    assert listed[0].prefix == a.prefix and a.key.startswith(a.prefix) and listed[1].created == b.created
    assert all(not hasattr(k, "key") for k in listed)


def test_revoke_takes_effect_at_once_in_another_process_view(tmp_path: Path) -> None:
    daemon_view, cli_view = KeyStore(tmp_path), KeyStore(tmp_path)
    made = cli_view.create("laptop")
    assert daemon_view.verify(made.key) == "laptop"  # created elsewhere: seen on the next check
    cli_view.revoke("laptop")
    assert daemon_view.verify(made.key) is None


def test_names_are_unique_and_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.create("laptop")
    with pytest.raises(ConflictError):
        store.create("laptop")
    with pytest.raises(ValidationError):
        store.create("Not A Name")
    with pytest.raises(NotFoundError, match="known: laptop"):
        store.revoke("phone")
