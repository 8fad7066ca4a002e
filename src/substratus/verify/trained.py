"""The build context for a trained-model image, made the way the control plane makes it.

The control plane copies a training run's /model/trained into a new image's
/model/saved with a two-line Dockerfile; `sub verify` does the same so that
"the trained model serves" is checked against what users will really get.
(A candidate to move into `substratus.build` and share with the control plane.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

TRAINED_DIR = "trained"


def trained_dockerfile(base_image: str) -> str:
    return f"FROM {base_image}\nCOPY {TRAINED_DIR}/ /model/saved/\n"


def write_trained_context(base_image: str, trained: Path, context: Path) -> Path:
    """Fill `context` with trained/ (a copy of `trained`) and the Dockerfile; returns `context`."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained, context / TRAINED_DIR, symlinks=True)
    (context / "Dockerfile").write_text(trained_dockerfile(base_image))
    return context
