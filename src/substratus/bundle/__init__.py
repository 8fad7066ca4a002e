"""Files that ship with substratus: the base images' build contexts and the examples.

`sub images build` and `sub examples` need files that live outside the Python
package in the repository (images/, examples/, tests/fixtures/contract/). A wheel
carries copies under `substratus/_bundle/` (setup.py writes them, mirroring the
repository's paths); an editable install or a source checkout reads the
repository itself. `path("images/ml")` answers the same in both cases.

Only the standard library and `substratus.errors` are used: the CLI imports this
at start-up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from substratus.errors import SubstratusError

# Repository paths a wheel carries (setup.py copies exactly these).
BUNDLED = (
    "images/base",
    "images/ml",
    "examples",
    "tests/fixtures/contract/model-shell",
    "tests/fixtures/contract/dataset-shell",
)
# Names left out of copies and hashes: caches, tests and the busybox binary
# that tests copy into fixtures are not build inputs.
IGNORED = ("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".ipynb_checkpoints", "build", "tests",
           "busybox")

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def root(package: Path = PACKAGE_DIR) -> Path:
    """The directory the BUNDLED paths are relative to: the wheel's copy, else the checkout."""
    packaged = package / "_bundle"
    if packaged.is_dir():
        return packaged
    checkout = package.parent.parent  # src/substratus -> the repository
    if (checkout / "images" / "ml" / "Dockerfile").is_file() and (checkout / "examples").is_dir():
        return checkout
    raise SubstratusError(
        f"this installation of substratus ({package}) carries no image build files or examples",
        hint="install substratus from a wheel built by `make wheel` (or `pip wheel .` in a checkout), "
             "or run `sub` from a checkout's virtual environment (`make venv`)")


def path(rel: str, *, package: Path = PACKAGE_DIR) -> Path:
    """One bundled directory, e.g. `path("images/ml")`."""
    if rel not in BUNDLED and not any(rel.startswith(b + "/") for b in BUNDLED):
        raise ValueError(f"{rel!r} is not bundled; bundled are {', '.join(BUNDLED)}")
    found = root(package) / rel
    if not found.exists():
        raise SubstratusError(f"bundled file {rel} is missing from {root(package)}",
                              hint="reinstall substratus; the installation is incomplete")
    return found


def ignore(directory: str, names: list[str]) -> set[str]:
    """`shutil.copytree(ignore=...)` for bundled directories."""
    return set(shutil.ignore_patterns(*IGNORED)(directory, names))


def files(directory: Path) -> Iterator[Path]:
    """Every file under `directory` that copies keep, in a stable order."""
    for parent, dirnames, filenames in os.walk(directory):
        skipped = ignore(parent, dirnames + filenames)
        dirnames[:] = sorted(d for d in dirnames if d not in skipped)
        for name in sorted(filenames):
            if name not in skipped:
                yield Path(parent) / name


def content_hash(directory: Path) -> str:
    """A short hash of the files a copy keeps (names and bytes): a change means a rebuild."""
    digest = hashlib.sha256()
    for f in files(directory):
        digest.update(f.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()[:16]
