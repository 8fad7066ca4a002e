"""`sub examples DIR` and the files the package ships (substratus.bundle)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from substratus import bundle
from substratus.bundle import examples
from substratus.cli.main import cli
from substratus.errors import SubstratusError
from substratus.resources.manifest import load_path

REPO = Path(__file__).resolve().parents[3]


def elf(tmp_path: Path, name: str, program_header_types: list[int]) -> Path:
    """A minimal little-endian 64-bit ELF header followed by program headers of these types."""
    phoff, phentsize = 64, 56
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 32, phoff)
    struct.pack_into("<HH", header, 54, phentsize, len(program_header_types))
    body = b"".join(struct.pack("<I", t) + bytes(phentsize - 4) for t in program_header_types)
    path = tmp_path / name
    path.write_bytes(bytes(header) + body)
    return path


def test_static_elf_means_no_program_interpreter(tmp_path: Path) -> None:
    assert examples.is_static_elf(elf(tmp_path, "static", [1, 1, 4]))
    assert not examples.is_static_elf(elf(tmp_path, "dynamic", [6, 3, 1]))  # PT_INTERP: needs ld.so
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert not examples.is_static_elf(tmp_path / "script")
    assert not examples.is_static_elf(tmp_path / "missing")


def test_a_dynamic_busybox_given_on_purpose_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubstratusError, match="not a statically linked") as err:
        examples.find_busybox(elf(tmp_path, "busybox", [3]))
    assert "busybox-static" in err.value.hint


def test_examples_hold_the_shell_pipeline_with_busybox_and_the_ml_demo(tmp_path: Path) -> None:
    busybox = elf(tmp_path, "busybox", [1])
    done = examples.write(tmp_path / "ex", busybox=busybox)
    assert done.busybox == str(busybox)
    assert {"shell", "demo", "gemma", "datasets", "models", "README.md"} <= set(done.entries)
    for image in ("shell/datasets/sonnets", "shell/models/bigram"):
        copied = done.dest / image / "busybox"
        assert copied.read_bytes() == busybox.read_bytes() and copied.stat().st_mode & 0o111
        assert (done.dest / image / "Dockerfile").read_text().count("COPY busybox /bin/busybox") == 1
    assert (done.dest / "shell/models/bigram/bin/serve.sh").stat().st_mode & 0o111
    kinds = [(o.kind, o.name) for o in load_path(done.dest / "shell")]
    assert kinds == [("Dataset", "sonnets"), ("Model", "bigram"), ("Model", "bigram-sonnets"),
                     ("ModelServer", "bigram-sonnets"), ("Notebook", "sonnets")]
    demo = load_path(done.dest / "demo")
    assert {o.name for o in demo} >= {"shakespeare", "tiny-gpt", "tiny-gpt-shakespeare"}


def test_dir_sources_of_the_written_manifests_point_at_written_images(tmp_path: Path) -> None:
    done = examples.write(tmp_path / "ex", busybox=elf(tmp_path, "busybox", [1]))
    for folder in ("shell", "demo", "gemma"):
        for obj in load_path(done.dest / folder):
            source = getattr(obj.spec, "source", None)
            if source is not None and source.dir:
                assert (Path(source.dir) / "Dockerfile").is_file(), (folder, obj.name, source.dir)


def test_without_a_static_busybox_the_shell_images_take_it_from_the_public_image(tmp_path: Path) -> None:
    done = examples.write(tmp_path / "ex", busybox=None, candidates=())
    assert done.busybox == examples.BUSYBOX_IMAGE
    text = (done.dest / "shell/models/bigram/Dockerfile").read_text()
    assert f"FROM {examples.BUSYBOX_IMAGE} AS busybox\nFROM scratch\nCOPY --from=busybox /bin/busybox" in text
    assert not (done.dest / "shell/models/bigram/busybox").exists()


def test_a_non_empty_folder_needs_force_and_keeps_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "ex"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(SubstratusError, match="not empty") as err:
        examples.write(dest, busybox=elf(tmp_path, "busybox", [1]))
    assert "--force" in err.value.hint
    examples.write(dest, busybox=elf(tmp_path, "busybox", [1]), force=True)
    assert (dest / "mine.txt").read_text() == "keep me" and (dest / "shell/pipeline.yaml").is_file()


def test_sub_examples_prints_the_folder_and_the_next_commands(tmp_path: Path) -> None:
    busybox = elf(tmp_path, "busybox", [1])
    result = CliRunner().invoke(cli, ["examples", str(tmp_path / "ex"), "--busybox", str(busybox)])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "ex" / "shell") in result.stdout
    assert "sub apply -f" in result.stderr and "sub images build" in result.stderr
    again = CliRunner().invoke(cli, ["examples", str(tmp_path / "ex")])
    assert again.exit_code == 1 and "not empty" in again.stderr


# -- where bundled files are found -------------------------------------------------------------
def test_a_wheel_reads_its_bundle_and_a_checkout_reads_the_repository(tmp_path: Path) -> None:
    assert bundle.root() == REPO  # this test runs from an editable install
    package = tmp_path / "site-packages" / "substratus"
    (package / "_bundle" / "images" / "ml").mkdir(parents=True)
    assert bundle.root(package) == package / "_bundle"
    assert bundle.path("images/ml", package=package) == package / "_bundle" / "images" / "ml"
    with pytest.raises(ValueError, match="not bundled"):
        bundle.path("src", package=package)


def test_an_installation_without_a_bundle_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(SubstratusError, match="carries no image build files") as err:
        bundle.root(tmp_path / "site-packages" / "substratus")
    assert "make wheel" in err.value.hint


def test_content_hash_ignores_caches_and_tests_but_not_build_files(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / "pkg" / "a.py").write_text("a = 1\n")
    before = bundle.content_hash(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("x")
    assert bundle.content_hash(tmp_path) == before
    (tmp_path / "pkg" / "a.py").write_text("a = 2\n")
    assert bundle.content_hash(tmp_path) != before


def test_setup_py_bundles_what_the_code_reads() -> None:
    manifest = (REPO / "MANIFEST.in").read_text()
    for rel in bundle.BUNDLED:
        assert f"graft {rel}" in manifest, f"MANIFEST.in does not put {rel} in the sdist"
        assert (REPO / rel).is_dir()
