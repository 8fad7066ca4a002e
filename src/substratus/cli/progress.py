"""Live progress bars for `sub apply --wait` on a terminal (rich), one per object.

Imported only when stderr is a terminal: pipes and CI get `wait.PlainView`'s
plain lines, and `sub` does not pay for rich otherwise. A bar is determinate
while a job reports `status.progress.percent` (load.sh and train.sh may write
progress.jsonl) and pulses while the work has no measure (builds, starting
containers). The text beside it says the Ready reason and the job's own
numbers: step, loss and the control plane's ETA.
"""

from __future__ import annotations

from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from substratus.cli.output import duration, ready_condition
from substratus.cli.wait import FAILED_REASONS, current, key_of, ref, settled
from substratus.resources.objectkey import ObjectKey


def describe_state(obj: dict[str, Any]) -> tuple[str, Optional[float], bool]:
    """(text beside the bar, percent or None, finished) for one object; pure, unit-tested."""
    reason = ready_condition(obj).get("reason", "Pending")
    if current(obj) and settled(obj):
        return f"[green]✓ {reason}[/]", 100.0, True
    if current(obj) and reason in FAILED_REASONS:
        return f"[red]✗ {reason}[/]", None, True
    p = obj.get("status", {}).get("progress") or {}
    parts = [reason]
    if p.get("step") is not None:
        parts.append(f"step {p['step']}" + (f"/{p['totalSteps']}" if p.get("totalSteps") else ""))
    if p.get("epoch") is not None:
        parts.append(f"epoch {p['epoch']:g}")
    if p.get("loss") is not None:
        parts.append(f"loss {p['loss']:.4g}")
    if p.get("etaSeconds") is not None:
        parts.append(f"ETA {duration(float(p['etaSeconds']))}")
    percent = p.get("percent") if reason in ("Loading", "Training") else None
    return " · ".join(parts), float(percent) if isinstance(percent, (int, float)) else None, False


class RichView:
    """A rich Progress on stderr with a task per object, in the order they were applied."""

    def __init__(self, keys: set[ObjectKey], console: Optional[Console] = None) -> None:
        self.progress = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.fields[ref]:<36}"),
                                 BarColumn(bar_width=30), TextColumn("{task.fields[percent]:>5}"),
                                 TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                                 console=console or Console(stderr=True), transient=False)
        self.tasks: dict[ObjectKey, TaskID] = {}
        self.expected = keys
        self.progress.start()

    def update(self, obj: dict[str, Any], elapsed: float) -> None:
        key = key_of(obj)
        state, percent, finished = describe_state(obj)
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = self.progress.add_task("", total=None, ref=ref(obj), percent="", state=state)
        shown = f"{percent:.0f}%" if percent is not None else ""
        self.progress.update(task, total=100 if percent is not None else None, completed=percent or 0,
                             state=state, percent=shown)
        if finished:
            self.progress.stop_task(task)
        self.progress.refresh()  # show each change now, not at the next timed refresh

    def close(self) -> None:
        self.progress.stop()
