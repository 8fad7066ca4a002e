"""Child processes of the engine runtime that stream: a deadline for blocking reads, line
splitting for asyncio streams, and ending a follower's process the moment its reader leaves.

Used by `runtimes.engine` only (runtimes never import each other; this is not a runtime).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import AsyncGenerator
from typing import Optional

MAX_LINE = 64 * 1024          # a longer log line is cut (one line must not hold the whole log)


def logs_argv(engine: str, name: str, tail: Optional[int], follow: bool) -> list[str]:
    argv = [engine, "logs"]
    if tail is not None:
        argv += ["--tail", str(tail)]
    if follow:
        argv.append("-f")
    return argv + ["--", name]


class Deadline:
    """Stops a child process that runs past `seconds`: TERM, then KILL ten seconds later."""

    def __init__(self, proc: "subprocess.Popen[str]", seconds: float) -> None:
        self.proc, self.expired = proc, False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def cancel(self) -> None:
        self._timer.cancel()


async def split_lines(stream: asyncio.StreamReader) -> AsyncGenerator[str, None]:
    """Lines of a byte stream, each cut at MAX_LINE, without StreamReader's line-length error."""
    buf = b""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            yield raw[:MAX_LINE].decode("utf-8", errors="replace")
        if len(buf) > MAX_LINE:
            yield buf[:MAX_LINE].decode("utf-8", errors="replace")
            buf = b""
    if buf:
        yield buf[:MAX_LINE].decode("utf-8", errors="replace")


async def reap(proc: asyncio.subprocess.Process) -> None:
    """End a child at once (a follower's client left) and collect it, even while being cancelled."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        await asyncio.shield(proc.wait())
    except asyncio.CancelledError:
        pass  # the shielded wait still completes; asyncio's child watcher reaps the process
    # (re-raising is left to the caller's own cancellation, which is already under way)
