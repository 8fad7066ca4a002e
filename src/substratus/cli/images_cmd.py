"""`sub images build`: the offline base images, from files shipped in the package.

Registered in the `sub` group by `cli.main`. `make setup` and
scripts/build-base-images.sh call this too, so there is one implementation.
The result (one line per image: pulled, built or unchanged) goes to stdout;
build logs and progress to stderr.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import click

from substratus.baseimages.decide import (
    DEBIAN_MIRROR,
    ML_BASE,
    PYTHON_BASE,
    ROOTFS,
    TORCH_INDEX_URL,
    TORCH_VERSION,
    Settings,
)


@dataclass(frozen=True)
class Flags:
    """The command line as given (None: not given)."""

    rebuild: bool = False
    only: Optional[str] = None
    wheels: Optional[Path] = None
    ca_bundle: Optional[Path] = None
    no_ca_bundle: bool = False
    pull_timeout: Optional[float] = None
    python_base: Optional[str] = None
    ml_base: Optional[str] = None
    rootfs: Optional[str] = None


def settings_from(flags: Flags, environ: dict[str, str]) -> Settings:
    """Flags > environment > defaults, read once here and passed down."""
    from substratus.baseimages import context

    if flags.no_ca_bundle:
        ca_bundle = None
    else:
        ca_bundle = flags.ca_bundle or context.default_ca_bundle(environ)
    pull_timeout = flags.pull_timeout
    if pull_timeout is None:
        pull_timeout = float(environ.get("SUBSTRATUS_PULL_TIMEOUT") or 20)
    return Settings(
        python_base=flags.python_base or PYTHON_BASE,
        ml_base=flags.ml_base or ML_BASE,
        rootfs=flags.rootfs or ROOTFS,
        rebuild=flags.rebuild,
        only=flags.only,
        wheel_dirs=(flags.wheels,) if flags.wheels else context.default_wheel_dirs(environ),
        ca_bundle=ca_bundle,
        mirror=environ.get("SUBSTRATUS_DEBIAN_MIRROR") or DEBIAN_MIRROR,
        pull_timeout=pull_timeout,
        torch_version=environ.get("SUBSTRATUS_TORCH_VERSION") or TORCH_VERSION,
        torch_index_url=environ.get("SUBSTRATUS_TORCH_INDEX_URL") or TORCH_INDEX_URL,
        docker_buildkit=environ.get("DOCKER_BUILDKIT"),
    )


@click.group("images", context_settings={"help_option_names": ["-h", "--help"]})
def images() -> None:
    """The base images the example images build FROM (python-base, ml-base)."""


@images.command("build")
@click.option("--rebuild", is_flag=True, help="Build even when an image exists and its build files are unchanged.")
@click.option("--only", type=click.Choice(["python-base", "ml-base"]), default=None, help="Build one image only.")
@click.option("--wheels", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Folder with the CPU torch wheel [env SUBSTRATUS_WHEELS_DIR; default: pip's find-links "
                   "folders, /opt/wheels].")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="CA bundle to put in the images, for TLS-intercepting proxies [env SUBSTRATUS_CA_BUNDLE; "
                   "default: /etc/ssl/certs/ca-certificates.crt when present].")
@click.option("--no-ca-bundle", is_flag=True, help="Keep the images' own CA certificates.")
@click.option("--pull-timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds to try pulling python:3.11-slim; 0 skips the pull [env SUBSTRATUS_PULL_TIMEOUT; "
                   "default 20].")
@click.option("--python-base", default=None, metavar="IMAGE", help=f"Name for python-base [{PYTHON_BASE}].")
@click.option("--ml-base", default=None, metavar="IMAGE", help=f"Name for ml-base [{ML_BASE}].")
@click.option("--rootfs", default=None, metavar="IMAGE", help=f"Name for the Debian root file system [{ROOTFS}].")
def build(**given: Any) -> None:
    """Build python-base and ml-base with the engine in use (podman or docker).

    \b
    python-base is python:3.11-slim when it can be pulled, else Debian bookworm
    made here with debootstrap (needs root). ml-base adds CPU torch, transformers,
    JupyterLab and the substratus-ml package. Images that exist and whose build
    files did not change are kept. The host CA bundle and a local torch wheel
    reach the build through its context, so docker and podman behave alike.

    \b
    Examples:
      sub images build
      SUBSTRATUS_ENGINE=docker sub images build --wheels ~/wheels
      sub images build --only python-base --pull-timeout 0
    """
    from substratus.baseimages.builder import Builder
    from substratus.runtimes.engine import EngineRuntime, detect_engine

    settings = settings_from(Flags(**given), dict(os.environ))
    runtime = EngineRuntime(detect_engine(os.environ.get("SUBSTRATUS_ENGINE") or None),
                            build_extra_args=["--network", "host"])
    click.echo(f"building base images with {runtime.engine}", err=True)
    started = time.monotonic()
    outcomes = Builder(runtime, settings, log=lambda line: click.echo(line, err=True), is_root=os.geteuid() == 0).run()
    for o in outcomes:
        click.echo(f"{o.image} {o.result} ({o.detail}) in {o.seconds:.0f}s")
    click.echo(f"base images ready in {time.monotonic() - started:.0f}s", err=True)

