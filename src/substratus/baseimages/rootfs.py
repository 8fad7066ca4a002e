"""A Debian bookworm root filesystem made with debootstrap: python-base without a registry.

debootstrap creates device nodes and chroots, so it needs real root. A rootless
podman user cannot run it; the error says how to get the image from root's
engine instead.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from pathlib import Path

from substratus.errors import EngineError
from substratus.runtimes.base import LogSink

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


def debootstrap(target: Path, mirror: str, log: LogSink) -> None:
    """Debian bookworm, minimal, with Python and CA certificates, into `target`; apt caches emptied.

    Its output goes to `log` line by line (it takes about a minute); the end of it
    is in the error when it fails.
    """
    argv = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(target), mirror]
    recent: deque[str] = deque(maxlen=20)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    for line in proc.stdout:
        recent.append(line.rstrip("\n"))
        log(recent[-1])
    if proc.wait() != 0:
        raise EngineError(f"debootstrap failed (exit {proc.returncode}):\n" + "\n".join(recent),
                          hint=f"check that {mirror} is reachable (SUBSTRATUS_DEBIAN_MIRROR picks another)")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (target / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
