"""Training progress as JSON lines: the optional ``progress.jsonl`` extension of the contract.

``train.sh`` may append one JSON object per line to ``/model/logs/progress.jsonl``
(``load.sh`` to ``/dataset/logs/progress.jsonl``); the control plane reads the
last line into the object's ``status.progress``. Keys: ``step`` (int),
``total_steps`` (int, when known), ``epoch`` (number), ``loss`` (number),
``time`` (unix seconds), plus any other numbers (``lr``, ``tokens_per_second``,
``eval_loss``...). This project adds ``checkpoint`` (int): the step of the
newest checkpoint saved or resumed from (:mod:`substratus_ml.checkpoints`), once
there is one. Each line is written whole and flushed, so a reader never sees
half a line.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, TextIO


class ProgressLog:
    def __init__(self, path: Path | None) -> None:
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def write(self, step: int, total_steps: int | None, epoch: float, loss: float,
              **metrics: float | int) -> None:
        if self._file is None:
            return
        record: dict[str, Any] = {"step": int(step)}
        if total_steps is not None:
            record["total_steps"] = int(total_steps)
        record.update(epoch=round(float(epoch), 4), loss=_number(loss), time=round(time.time(), 3))
        record.update({name: _number(value) for name, value in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _number(value: float | int) -> float | int | None:
    """JSON has no NaN or infinity: such a value is written as null. Whole numbers stay whole."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None
