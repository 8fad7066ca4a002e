"""Build hook: ship the base images' build contexts and the examples inside the wheel.

They live outside src/ (images/, examples/, tests/fixtures/contract/) because the
repository's scripts and tests use them in place. An installed `sub` has no
repository, so `sub images build` and `sub examples` read copies under
`substratus/_bundle/`, whose paths mirror the repository's: `substratus.bundle`
resolves a path the same way in a wheel and in a checkout. Editable installs get
no copy; they read the checkout itself.

Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# One list of what is bundled and what is left out, shared with the code that reads it
# (substratus.bundle imports only the standard library and substratus.errors).
sys.path.insert(0, str(HERE / "src"))
from substratus.bundle import BUNDLED, ignore  # noqa: E402


class BuildPyWithBundle(build_py):
    """build_py plus the bundled files under substratus/_bundle/ (not for editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "substratus" / "_bundle"
        shutil.rmtree(target, ignore_errors=True)
        for rel in BUNDLED:
            source = HERE / rel
            if not source.is_dir():
                raise SystemExit(f"setup.py: {rel} is missing; build the wheel from a complete checkout or sdist")
            shutil.copytree(source, target / rel, ignore=ignore)


setup(cmdclass={"build_py": BuildPyWithBundle})
