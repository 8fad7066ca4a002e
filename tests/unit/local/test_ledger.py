"""The ledger of images this control plane built (`controlplane.ledger`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from substratus.local.ledger import BuiltImages

ID = "ab" * 32


def test_a_built_id_is_remembered_with_or_without_its_digest_prefix(tmp_path: Path) -> None:
    ledger = BuiltImages(tmp_path / "home" / "images")
    assert ID not in ledger and ledger.ids() == set()
    ledger.add(f"sha256:{ID}\n")
    assert ID in ledger and f"sha256:{ID}" in ledger and ledger.ids() == {ID}
    assert BuiltImages(tmp_path / "home" / "images").ids() == {ID}, "it lasts beyond the process"
    assert stat.S_IMODE((tmp_path / "home" / "images").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "home" / "images" / ID).stat().st_mode) == 0o600


def test_what_is_not_an_image_id_is_never_a_path(tmp_path: Path) -> None:
    ledger = BuiltImages(tmp_path / "images")
    for bad in ("", "../../etc/passwd", "ABC", "sha256:", "12345", "a/b" * 8):
        ledger.add(bad)
        assert bad not in ledger
    assert ledger.ids() == set() and not (tmp_path / "etc").exists()


def test_entries_of_images_that_are_gone_are_dropped(tmp_path: Path) -> None:
    ledger = BuiltImages(tmp_path / "images")
    kept, gone = "1" * 64, "2" * 64
    ledger.add(kept)
    ledger.add(gone)
    assert ledger.forget_all_but({f"sha256:{kept}", "9" * 64}) == 1
    assert ledger.ids() == {kept}


def test_a_planted_link_is_not_followed(tmp_path: Path) -> None:
    ledger = BuiltImages(tmp_path / "images")
    (tmp_path / "images").mkdir()
    target = tmp_path / "target"
    target.write_text("keep")
    os.symlink(target, tmp_path / "images" / ID)
    try:
        ledger.add(ID)
    except OSError:
        pass
    assert target.read_text() == "keep"
