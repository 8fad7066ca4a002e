"""What `sub images build` will do, decided without touching the engine.

`plan_python_base` and `plan_ml_base` take what the engine and the machine
showed (which images exist, their labels, whether we are root, which torch wheel
lies here) and return one step each. The builder observes, plans and carries
out python-base first, then ml-base, whose hash includes the python-base it is
built FROM. Unit tests check the decisions with plain objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PYTHON_BASE = "localhost/substratus/python-base:bookworm"
ML_BASE = "localhost/substratus/ml-base:0.1"
ROOTFS = "localhost/substratus/debian-rootfs:bookworm"
PUBLIC_PYTHON = "docker.io/library/python:3.11-slim"
HASH_LABEL = "ai.substratus.source-hash"
BASE_LABEL = "ai.substratus.base"
TORCH_VERSION = "2.13.0"
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Settings:
    """Read once by the CLI (flags > environment > defaults) and passed down."""

    python_base: str = PYTHON_BASE
    ml_base: str = ML_BASE
    rootfs: str = ROOTFS
    public_python: str = PUBLIC_PYTHON
    rebuild: bool = False
    only: Optional[str] = None  # "python-base" or "ml-base"
    wheel_dirs: tuple[Path, ...] = ()
    ca_bundle: Optional[Path] = None
    mirror: str = DEBIAN_MIRROR
    pull_timeout: float = 20.0  # 0: do not try to pull the public image
    torch_version: str = TORCH_VERSION
    torch_index_url: str = TORCH_INDEX_URL
    docker_buildkit: Optional[str] = None  # DOCKER_BUILDKIT as the CLI found it


@dataclass(frozen=True)
class Observed:
    """What the engine and the machine showed before the build."""

    python_base_present: bool
    rootfs_present: bool
    ml_base_hash: Optional[str]  # the HASH_LABEL of the existing ml-base, None when absent
    is_root: bool
    torch_wheel: Optional[Path]


@dataclass(frozen=True)
class PythonBaseStep:
    """Make python-base: pull the public image first when allowed, else build it here."""

    try_pull: bool
    debootstrap: bool  # make a new Debian root filesystem (else reuse the ROOTFS image)


@dataclass(frozen=True)
class MlBaseStep:
    torch_wheel: Optional[Path]  # None: pip downloads torch==VERSION+cpu from the CPU index
    source_hash: str


@dataclass(frozen=True)
class Keep:
    image: str
    why: str


Step = PythonBaseStep | MlBaseStep | Keep


def plan_python_base(settings: Settings, observed: Observed) -> Step:
    if observed.python_base_present and not settings.rebuild:
        return Keep(settings.python_base, "exists (--rebuild builds it again)")
    return PythonBaseStep(try_pull=settings.pull_timeout > 0,
                          debootstrap=settings.rebuild or not observed.rootfs_present)


def plan_ml_base(settings: Settings, observed: Observed, ml_hash: str) -> Step:
    """`ml_hash` is the hash the image would carry: its build files and the python-base it is FROM."""
    if observed.ml_base_hash == ml_hash and not settings.rebuild:
        return Keep(settings.ml_base, f"exists, built from these files and this python-base ({ml_hash})")
    return MlBaseStep(torch_wheel=observed.torch_wheel, source_hash=ml_hash)


def torch_note(settings: Settings, wheel: Optional[Path]) -> str:
    """Say where torch comes from, so a download is never a surprise."""
    if wheel is not None:
        return f"torch: local wheel {wheel} (handed to the build through its context)"
    searched = ", ".join(str(d) for d in settings.wheel_dirs) or "nowhere (no wheel folder given)"
    return (f"torch: no local torch-{settings.torch_version}+cpu wheel in {searched}; the build downloads "
            f"torch=={settings.torch_version}+cpu (CPU only, about 190 MB) from {settings.torch_index_url}. "
            "Give a wheel folder with --wheels or SUBSTRATUS_WHEELS_DIR to build offline")


def wheel_matches(name: str, version: str) -> bool:
    """A CPU build of torch `version` (never a CUDA one), e.g. torch-2.13.0+cpu-cp311-...whl."""
    return name.startswith(f"torch-{version}+cpu-") and name.endswith(".whl")


def pick_torch_wheel(candidates: list[Path], version: str, python_tag: str = "cp311") -> Optional[Path]:
    """The wheel for the base image's Python among `candidates` (first folder wins)."""
    matching = [p for p in candidates if wheel_matches(p.name, version)]
    for wheel in matching:
        if f"-{python_tag}-" in wheel.name:
            return wheel
    return None


def legacy_builder_refusal(engine: str, docker_buildkit: Optional[str], server_components: list[str]) -> Optional[str]:
    """Why ml-base cannot build here, before its first layer: None when it can.

    Its Dockerfile bind-mounts the torch wheel with `RUN --mount`. Docker's legacy
    builder (DOCKER_BUILDKIT=0 against a Docker engine) refuses that; BuildKit and
    podman's own builder (also behind its Docker API) do it.
    """
    if Path(engine).name != "docker" or (docker_buildkit or "").lower() not in ("0", "false"):
        return None
    if "Podman Engine" in server_components:
        return None
    return ("DOCKER_BUILDKIT=0 selects Docker's legacy builder, which cannot build ml-base: its Dockerfile "
            "bind-mounts the torch wheel with `RUN --mount`")
