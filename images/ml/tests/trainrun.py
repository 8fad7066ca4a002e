"""Running ``substratus-ml train`` from tests, hermetically.

Every run gets its own params file and checkpoint directory paths under the
test's tmp_path (absent unless the test creates them), so a ``/model/params.json``
or ``/model/checkpoints`` on the machine running the tests is never read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from substratus_ml.cli import main

SENTENCES = ["The cat sat on the mat and purred.", "The dog sat on the log and barked.",
             "The bird sat on the wire and sang."]

TRAIN_VARIABLES = ("TRAIN_DATA_PATH", "TRAIN_DATA_LIMIT", "TRAIN_BATCH_SIZE", "TRAIN_EPOCHS",
                   "DATASET_PATH", "TRAIN_OUTPUT", "TRAIN_CHECKPOINT_DIR")


def text_dataset(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"text": SENTENCES[i % 3]}) + "\n" for i in range(count)))
    return path


@dataclass(frozen=True)
class Dirs:
    """The /model/* paths of one run, under a test's tmp_path."""

    root: Path

    @property
    def trained(self) -> Path:
        return self.root / "trained"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def params_file(self) -> Path:
        return self.root / "params.json"

    def metrics(self) -> dict[str, Any]:
        return dict(json.loads((self.logs / "metrics.json").read_text()))

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.trained / "training_params.json").read_text()))

    def progress(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.logs / "progress.jsonl").read_text().splitlines()]

    def log(self) -> str:
        return (self.logs / "train.log").read_text()

    def argv(self, model_dir: Path) -> list[str]:
        return ["train", "--model-dir", str(model_dir), "--out", str(self.trained),
                "--logs-dir", str(self.logs), "--params-file", str(self.params_file),
                "--checkpoint-dir", str(self.checkpoints)]


def clean_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for name in [*TRAIN_VARIABLES, *(k for k in os.environ if k.startswith("PARAM_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SUBSTRATUS_THREADS", "1")  # the same arithmetic in every run
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def train(dirs: Dirs, model_dir: Path, monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str],
          extra: Sequence[str] = ()) -> int:
    clean_env(monkeypatch, env)
    return main([*dirs.argv(model_dir), *extra])
