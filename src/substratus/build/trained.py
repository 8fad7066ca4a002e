"""The trained-model image: FROM the base image, the training run's output copied into the
directory the contract says models are served from (`contract.TRAINED_DIR` -> `contract.SAVED_DIR`).

Shared by the control plane (after a training run) and `sub verify` (the
"trained model still serves" clause), so both check exactly what users get.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from substratus.contract import SAVED_DIR, TRAINED_NAME

TRAINED_DIR = TRAINED_NAME  # the directory in the build context holding the run's trained/ output


def trained_dockerfile(base_image: str) -> str:
    return f"FROM {base_image}\nCOPY {TRAINED_DIR}/ {SAVED_DIR}/\n"


def write_trained_context(base_image: str, trained: Path, context: Path) -> Path:
    """Fill `context` with trained/ (a copy of `trained`) and the Dockerfile; returns `context`."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trained, context / TRAINED_DIR, symlinks=True)
    (context / "Dockerfile").write_text(trained_dockerfile(base_image))
    return context
