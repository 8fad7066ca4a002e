"""Download progress: bytes done, total, rate and ETA, reported through a callback.

The control plane turns a `FetchProgress` into `status.progress` the way it
shows a training run's (percent, ETA); the command line prints it as a line on
stderr. The meter is thread-safe (files download on several threads) and
takes its clock from the caller, so tests never wait on real time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Optional

from substratus.resources.status import Progress

Phase = Literal["resolving", "waiting", "downloading", "verifying", "unpacking", "done"]


@dataclass(frozen=True)
class FetchProgress:
    phase: Phase
    uri: str
    done_bytes: int                 # on disk, including bytes kept from an interrupted attempt
    total_bytes: Optional[int]      # None while the source has not said
    rate_bps: float                 # bytes per second fetched in this attempt (resumed bytes excluded)
    eta_s: Optional[float]          # None when the total or the rate is unknown
    files_done: int
    files_total: int

    @property
    def percent(self) -> Optional[float]:
        if not self.total_bytes:
            return None
        return min(100.0, 100.0 * self.done_bytes / self.total_bytes)

    def to_status(self, now: float) -> Progress:
        """`status.progress` of the object waiting for this fetch (phase "fetch"; steps are bytes)."""
        pct = self.percent
        return Progress(phase="fetch", step=self.done_bytes, total_steps=self.total_bytes,
                        percent=round(pct, 1) if pct is not None else None, eta_seconds=self.eta_s, updated_at=now,
                        metrics={"rate_bps": round(self.rate_bps, 1), "files_done": float(self.files_done),
                                 "files_total": float(self.files_total)})

    def jsonl(self, now: float) -> str:
        """One line of the contract's progress.jsonl (steps are bytes), for a pod whose logs are collected
        like a load's: `resources.progress.parse_line` reads it back."""
        doc: dict[str, float | int] = {"step": self.done_bytes, "time": now, "rate_bps": round(self.rate_bps, 1),
                                       "files_done": self.files_done, "files_total": self.files_total}
        if self.total_bytes is not None:
            doc["total_steps"] = self.total_bytes
        return json.dumps(doc, sort_keys=True)

    def line(self) -> str:
        """`downloading 41% 412.0 MiB/1.0 GiB 85.3 MiB/s eta 7s (3/8 files)` for logs and the CLI."""
        if self.phase in ("resolving", "waiting"):
            return f"{self.phase} {self.uri}" + (" (another fetch of it is downloading)" if self.phase == "waiting"
                                                 else "")
        pct = f"{self.percent:.0f}% " if self.percent is not None else ""
        total = f"/{human(self.total_bytes)}" if self.total_bytes is not None else ""
        eta = f" eta {self.eta_s:.0f}s" if self.eta_s is not None else ""
        return (f"{self.phase} {pct}{human(self.done_bytes)}{total} {human(int(self.rate_bps))}/s{eta} "
                f"({self.files_done}/{self.files_total} files)")


ProgressCallback = Callable[[FetchProgress], None]


def human(n: Optional[int]) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


class Meter:
    """Counts bytes from several threads and calls back at most every `interval` seconds."""

    def __init__(self, uri: str, total: Optional[int], files: int, callback: Optional[ProgressCallback],
                 *, clock: Callable[[], float] = time.monotonic, interval: float = 0.5) -> None:
        self.uri = uri
        self.total = total
        self.files_total = files
        self._callback = callback
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._started = clock()
        self._last = float("-inf")
        self.done = 0
        self.fetched = 0
        self.files_done = 0
        self.phase: Phase = "downloading"

    def resumed(self, n: int) -> None:
        """Bytes already on disk from an earlier attempt: done, but not part of the rate."""
        with self._lock:
            self.done += n
        self._maybe_report()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            self.fetched += n
        self._maybe_report()

    def restart_file(self, n: int) -> None:
        """A file's kept bytes turned out unusable: they are fetched again."""
        with self._lock:
            self.done -= n

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
        self._maybe_report()

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.report()

    def snapshot(self) -> FetchProgress:
        with self._lock:
            elapsed = max(self._clock() - self._started, 1e-9)
            rate = self.fetched / elapsed
            left = None if self.total is None else max(self.total - self.done, 0)
            eta = left / rate if left is not None and rate > 0 else (0.0 if left == 0 else None)
            return FetchProgress(self.phase, self.uri, self.done, self.total, rate, eta,
                                 self.files_done, self.files_total)

    def report(self) -> None:
        if self._callback is not None:
            self._last = self._clock()
            self._callback(self.snapshot())

    def _maybe_report(self) -> None:
        if self._callback is not None and self._clock() - self._last >= self._interval:
            self.report()
