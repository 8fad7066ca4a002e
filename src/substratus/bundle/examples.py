"""`sub examples DIR`: write the example manifests and contract images to a folder.

An installed `sub` has no repository to apply examples from. This writes the
repository's `examples/` tree (the ML demo: a dataset, a tiny GPT-2 and the
manifests that fine-tune and serve it, plus the opt-in Gemma model) and a
`shell/` pipeline whose images are busybox, shell and awk only, so that
`sub apply -f DIR/shell --wait` works on a machine with nothing but a container
engine, while `DIR/demo` needs the base images of `sub images build`.

The shell images are the contract fixtures the integration tests use
(tests/fixtures/contract/{dataset,model}-shell): one source, tested on every run.
Their Dockerfiles build `FROM scratch` with a static busybox copied into the build
context. Without a static busybox on this machine (Docker Desktop on a Mac, say)
the Dockerfiles take busybox from the public image instead.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from substratus import bundle
from substratus.errors import SubstratusError

# Where each shell image goes under DIR/shell (its manifest names these dirs).
SHELL_IMAGES = {
    "tests/fixtures/contract/dataset-shell": "shell/datasets/sonnets",
    "tests/fixtures/contract/model-shell": "shell/models/bigram",
}
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"), Path("/usr/local/bin/busybox"))
# Used when no static busybox is at hand: the musl build in this image is static.
BUSYBOX_IMAGE = "docker.io/library/busybox:1.36.1-musl"
_LOCAL_BUSYBOX = "FROM scratch\nCOPY busybox /bin/busybox\n"


@dataclass(frozen=True)
class Written:
    """What `write` did: the folder, its top-level entries, and where busybox comes from."""

    dest: Path
    entries: list[str]
    busybox: str  # the host file copied in, or the image the Dockerfiles take it from


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked).

    A dynamically linked busybox copied into a `FROM scratch` image cannot start:
    its loader and libc are not there.
    """
    try:
        with path.open("rb") as fh:
            header = fh.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] not in (1, 2):
                return False
            bits64, endian = header[4] == 2, "<" if header[5] == 1 else ">"
            # e_phoff, then e_phentsize and e_phnum, at offsets that differ for 32 and 64 bits
            off_fmt, off_at, counts_at = ("Q", 32, 54) if bits64 else ("I", 28, 42)
            (phoff,) = struct.unpack_from(endian + off_fmt, header, off_at)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, counts_at)
            for i in range(phnum):
                fh.seek(phoff + i * phentsize)
                (p_type,) = struct.unpack(endian + "I", fh.read(4))
                if p_type == 3:  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error):
        return False


def find_busybox(given: Optional[Path], candidates: tuple[Path, ...] = BUSYBOX_CANDIDATES) -> Optional[Path]:
    """The static busybox to copy: `given` (which must be one), else the first found here."""
    if given is not None:
        if not is_static_elf(given):
            raise SubstratusError(f"--busybox {given}: not a statically linked ELF executable",
                                  hint="give a static busybox (Debian/Ubuntu: apt-get install busybox-static, "
                                       "then --busybox /bin/busybox), or leave --busybox out to take busybox "
                                       f"from {BUSYBOX_IMAGE} at build time")
        return given
    return next((c for c in candidates if is_static_elf(c)), None)


def pull_busybox_instead(dockerfile: Path) -> None:
    """Rewrite a shell image's Dockerfile to copy busybox from BUSYBOX_IMAGE."""
    text = dockerfile.read_text()
    if text.count(_LOCAL_BUSYBOX) != 1:
        raise SubstratusError(f"{dockerfile}: expected one 'FROM scratch' + 'COPY busybox /bin/busybox'",
                              hint="the bundled shell example changed shape; report this as a bug")
    dockerfile.write_text(text.replace(
        _LOCAL_BUSYBOX,
        f"FROM {BUSYBOX_IMAGE} AS busybox\nFROM scratch\nCOPY --from=busybox /bin/busybox /bin/busybox\n"))


def check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise SubstratusError(f"{dest} exists and is not a directory", hint="choose another DIR")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise SubstratusError(f"{dest} is not empty",
                              hint=f"choose a new DIR, or run `sub examples {dest} --force` to overwrite "
                                   "the example files in it (other files are kept)")


def write(dest: Path, *, busybox: Optional[Path] = None, force: bool = False,
          candidates: tuple[Path, ...] = BUSYBOX_CANDIDATES, package: Path = bundle.PACKAGE_DIR) -> Written:
    """Write the examples to `dest`; see the module docstring for the layout."""
    check_destination(dest, force)
    static = find_busybox(busybox, candidates)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(bundle.path("examples", package=package), dest, ignore=bundle.ignore, dirs_exist_ok=True)
    for source, target in SHELL_IMAGES.items():
        image_dir = dest / target
        shutil.copytree(bundle.path(source, package=package), image_dir, ignore=bundle.ignore,
                        dirs_exist_ok=True)
        if static is not None:
            shutil.copy2(static, image_dir / "busybox")
            (image_dir / "busybox").chmod(0o755)
        else:
            (image_dir / "busybox").unlink(missing_ok=True)
            pull_busybox_instead(image_dir / "Dockerfile")
    return Written(dest=dest, entries=sorted(p.name for p in dest.iterdir()),
                   busybox=str(static) if static is not None else BUSYBOX_IMAGE)
