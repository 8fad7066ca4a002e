"""Reading the optional progress extension of the contract.

`train.sh` and `load.sh` may append JSON lines to `/model/logs/progress.jsonl`
or `/dataset/logs/progress.jsonl`: one object per line with `step`,
`total_steps`, `epoch`, `loss`, `time` (unix seconds) and any other numbers.
The control plane publishes the latest as `status.progress`; the dashboard
draws the series. A job's output is untrusted: a malformed line, a
non-number, or a line that is too long is skipped, never fatal.

Pure functions; callers read the file (a capped tail) and pass the text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from substratus.resources.status import Progress

PROGRESS_FILE = "progress.jsonl"
PROGRESS_TAIL = 256 * 1024  # bytes of the file read from its end: the latest lines are what status shows
MAX_LINE = 4096
MAX_METRICS = 16
KNOWN = ("step", "total_steps", "epoch", "loss", "time")


@dataclass(frozen=True)
class Point:
    step: Optional[int]
    total_steps: Optional[int]
    epoch: Optional[float]
    loss: Optional[float]
    time: Optional[float]
    metrics: dict[str, float] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in KNOWN if getattr(self, k) is not None}
        out.update(self.metrics)
        return out


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> Optional[int]:
    number = _number(value)
    return int(number) if number is not None and number >= 0 and number == int(number) else None


def parse_line(line: str) -> Optional[Point]:
    """One line, or None when it is not a JSON object with at least one usable number."""
    if len(line) > MAX_LINE:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    metrics: dict[str, float] = {}
    for key, value in doc.items():
        number = _number(value)
        if key not in KNOWN and number is not None and isinstance(key, str) and len(metrics) < MAX_METRICS:
            metrics[key[:64]] = number
    point = Point(step=_count(doc.get("step")), total_steps=_count(doc.get("total_steps")),
                  epoch=_number(doc.get("epoch")), loss=_number(doc.get("loss")), time=_number(doc.get("time")),
                  metrics=metrics)
    usable = any(getattr(point, k) is not None for k in ("step", "epoch", "loss")) or metrics
    return point if usable else None


def parse(text: str) -> list[Point]:
    """Every usable line of a progress file, in order."""
    return [p for p in (parse_line(line) for line in text.splitlines() if line.strip()) if p is not None]


def summarise(points: list[Point], phase: str) -> Optional[Progress]:
    """The latest point, with percent and an ETA from the pace between the first and last timed steps."""
    if not points:
        return None
    last = points[-1]
    total = next((p.total_steps for p in reversed(points) if p.total_steps), None)
    percent = None
    if total and last.step is not None:
        percent = round(min(100.0, 100.0 * last.step / total), 1)
    return Progress(phase=phase, step=last.step, total_steps=total, percent=percent, epoch=last.epoch,
                    loss=last.loss, eta_seconds=_eta(points, total), updated_at=last.time,
                    metrics=dict(last.metrics))


def _eta(points: list[Point], total: Optional[int]) -> Optional[float]:
    timed = [p for p in points if p.time is not None and p.step is not None]
    if not total or len(timed) < 2:
        return None
    first, last = timed[0], timed[-1]
    assert first.step is not None and last.step is not None and first.time is not None and last.time is not None
    steps, seconds = last.step - first.step, last.time - first.time
    if steps <= 0 or seconds <= 0:
        return None
    return round(max(0.0, (total - last.step) * seconds / steps), 1)
