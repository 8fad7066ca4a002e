"""A Debian bookworm root filesystem made with debootstrap: python-base without a registry.

debootstrap creates device nodes and chroots, so it needs real root. A rootless
podman user cannot run it; the error says how to get the image from root's
engine instead.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from substratus.errors import EngineError, tail

PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"


def check_can_debootstrap(is_root: bool, python_base: str, engine: str) -> None:
    if not is_root:
        raise EngineError(
            f"cannot make {python_base} here: the public python:3.11-slim image cannot be pulled, and "
            "making a Debian image with debootstrap needs root",
            hint=f"build it as root (`sudo sub images build --only python-base`), then copy it to this user: "
                 f"`sudo {engine} save {python_base} | {engine} load`; or make the registry reachable")
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed (needed to make python-base without a registry)",
                          hint="apt-get install debootstrap (scripts/setup-engine.sh does)")


def debootstrap(target: Path, mirror: str, timeout: float = 1800) -> None:
    """Debian bookworm, minimal, with Python and CA certificates, into `target`; apt caches emptied."""
    argv = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(target), mirror]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise EngineError(f"debootstrap did not finish in {timeout:.0f}s",
                          hint=f"check that {mirror} is reachable, or set SUBSTRATUS_DEBIAN_MIRROR") from err
    if proc.returncode != 0:
        raise EngineError(f"debootstrap failed (exit {proc.returncode}):\n{tail(proc.stdout + proc.stderr, 20)}",
                          hint=f"check that {mirror} is reachable (SUBSTRATUS_DEBIAN_MIRROR picks another)")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
