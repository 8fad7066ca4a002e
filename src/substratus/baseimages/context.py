"""Build contexts for the base images, assembled in a temporary folder.

`docker build` has no `-v`, and the Docker API that podman serves has no
`--secret` without BuildKit, so what the build needs from this machine goes
into the context itself: engine-neutral, and visible in the build log.

    python-base   images/base/Dockerfile + host-ca-bundle.crt
    ml-base       images/ml/* + build-extra/ca-bundle.crt + build-extra/<torch wheel>

The CA bundle is public certificates (no secret): the proxy's root CA must end
up in the images anyway, or builds FROM them cannot reach PyPI. An empty
bundle file means "none given"; the Dockerfiles then keep the image's own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from substratus import bundle
from substratus.baseimages.decide import pick_torch_wheel

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
EXTRA = "build-extra"


def python_base_context(work: Path, ca_bundle: Optional[Path]) -> Path:
    ctx = work / "python-base"
    ctx.mkdir(parents=True)
    shutil.copy2(bundle.path("images/base") / "Dockerfile", ctx / "Dockerfile")
    _place_ca(ca_bundle, ctx / "host-ca-bundle.crt")
    return ctx


def ml_base_context(work: Path, ca_bundle: Optional[Path], torch_wheel: Optional[Path]) -> Path:
    ctx = work / "ml-base"
    shutil.copytree(bundle.path("images/ml"), ctx, ignore=bundle.ignore)
    extra = ctx / EXTRA
    extra.mkdir()
    _place_ca(ca_bundle, extra / "ca-bundle.crt")
    if torch_wheel is not None:
        _link_or_copy(torch_wheel, extra / torch_wheel.name)
    return ctx


def _place_ca(ca_bundle: Optional[Path], target: Path) -> None:
    if ca_bundle is None:
        target.write_bytes(b"")
    else:
        shutil.copyfile(ca_bundle, target)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link saves copying a 190 MB wheel when both lie on one file system."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def find_torch_wheel(folders: tuple[Path, ...], version: str) -> Optional[Path]:
    """The CPU torch wheel for the base images' Python 3.11 in the first folder that has one."""
    for folder in folders:
        if folder.is_dir():
            found = pick_torch_wheel(sorted(folder.glob("torch-*.whl")), version)
            if found is not None:
                return found
    return None


def default_wheel_dirs(environ: dict[str, str]) -> tuple[Path, ...]:
    """SUBSTRATUS_WHEELS_DIR, else pip's local find-links folders (PIP_FIND_LINKS), else /opt/wheels."""
    if environ.get("SUBSTRATUS_WHEELS_DIR"):
        return (Path(environ["SUBSTRATUS_WHEELS_DIR"]),)
    links = [Path(p.removeprefix("file://")) for p in environ.get("PIP_FIND_LINKS", "").split()
             if "://" not in p or p.startswith("file://")]
    return tuple(links) + (Path("/opt/wheels"),)


def default_ca_bundle(environ: dict[str, str]) -> Optional[Path]:
    """SUBSTRATUS_CA_BUNDLE ('' for none), else this machine's bundle when there is one."""
    if "SUBSTRATUS_CA_BUNDLE" in environ:
        given = environ["SUBSTRATUS_CA_BUNDLE"]
        return Path(given) if given else None
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
