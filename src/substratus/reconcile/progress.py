"""Job progress for a snapshot, the same way on both backends: the `logs/progress.jsonl` of each
load or train run that has a container, summarised (`resources.progress`). Only where the file is
read differs: a run directory on this machine, or the artifact store of a cluster (there once the
run's logs are uploaded: at the end, or as they go with a volume store)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePath

from substratus.build import naming
from substratus.resources import progress
from substratus.resources.status import Progress
from substratus.runtimes.base import ContainerState

ReadTail = Callable[[PurePath, int], str]  # (file, at most this many bytes) -> its end, "" when absent


def job_progress(containers: Iterable[ContainerState], object_dir: PurePath, read_tail: ReadTail) -> dict[str, Progress]:
    """Run directory (as the planners name it) -> the latest progress of its load/train job."""
    out: dict[str, Progress] = {}
    for c in containers:
        role = c.labels.get(naming.label("role"), "")
        run = c.labels.get(naming.label("run"), "")
        if role not in ("load", "train") or not run:
            continue
        run_dir = object_dir / run
        text = read_tail(run_dir / "logs" / progress.PROGRESS_FILE, progress.PROGRESS_TAIL)
        summary = progress.summarise(progress.parse(text), role) if text else None
        if summary is not None:
            out[str(run_dir)] = summary
    return out
