"""`ContainerDir`: a directory inside a running container, as a sync `Side`, over `Runtime.exec`.

Every operation is one `exec` of tools any contract image has (its scripts
need a shell; busybox and coreutils both have find, stat, tar, sh): a scan
is one `find ... -exec stat`, changed files come back in one `tar -c`
(hashed here, and kept for this round's copies), writes go in as one tar of
temporary files that a small sh loop renames into place only where the file
is still what the scan saw. Paths are passed as arguments (never pasted into
a script) and are relative to the working directory, as `exec` runs there.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Optional

from substratus.errors import EngineError
from substratus.runtimes.base import Runtime
from substratus.sync.decide import Entry
from substratus.sync.ignore import PRUNE_NAMES, PRUNE_TOP, TEMP_MARK, Excludes
from substratus.sync.sides import DEFAULT_MAX_SIZE, Cached, Expect, FileData, ScanError, trusted

CHUNK = 200  # paths per exec: well under any argv limit
# Rename each temporary file onto its target if the target is still what the scan saw ("mtime size" or absent).
MOVE = ('while [ $# -ge 3 ]; do tmp=$1; dst=$2; want=$3; shift 3; '
        'have=$(stat -c "%Y %s" "$dst" 2>/dev/null || echo absent); '
        'if [ "$have" = "$want" ]; then mv -f "$tmp" "$dst" || echo "skipped $dst"; '
        'else rm -f "$tmp"; echo "skipped $dst"; fi; done')
REMOVE = ('while [ $# -ge 2 ]; do p=$1; want=$2; shift 2; '
          'have=$(stat -c "%Y %s" "$p" 2>/dev/null || echo absent); '
          'if [ "$have" = "$want" ]; then rm -f "$p" || echo "skipped $p"; else echo "skipped $p"; fi; done')


def chunks(items: list[str], n: int = CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def stamp(entry: Optional[Entry]) -> str:
    """What `stat -c "%Y %s"` prints for a file as the scan saw it."""
    return "absent" if entry is None else f"{int(entry.mtime)} {entry.size}"


def parse_listing(text: str) -> Iterator[tuple[str, float, int]]:
    """`<mtime> <size> ./path` lines -> (path, mtime, size); lines that do not parse are skipped."""
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and parts[2].startswith("./"):
            yield parts[2][2:], float(parts[0]), int(parts[1])


class ContainerDir:
    def __init__(self, runtime: Runtime, container: str, workdir: str, excludes: Callable[[], Excludes], *,
                 max_size: int = DEFAULT_MAX_SIZE, label: str = "notebook", clock: Callable[[], float] = time.time,
                 timeout: float = 120) -> None:
        self.runtime, self.container, self.workdir = runtime, container, workdir
        self.excludes, self.max_size, self.label, self.clock, self.timeout = excludes, max_size, label, clock, timeout
        self.cache: dict[str, Cached] = {}
        self.fetched: dict[str, FileData] = {}
        self.too_big: set[str] = set()

    def _exec(self, argv: list[str], stdin: Optional[bytes] = None) -> tuple[int, bytes, str]:
        try:
            res = self.runtime.exec(self.container, argv, stdin=stdin, workdir=self.workdir, timeout=self.timeout)
        except EngineError as err:
            raise ScanError(err.message) from err
        return res.exit_code, res.stdout, res.stderr

    def scan(self) -> dict[str, Entry]:
        ex, now = self.excludes(), self.clock()
        prune: list[str] = []
        for test in [*(["-name", n] for n in PRUNE_NAMES), *(["-path", f"./{t}"] for t in PRUNE_TOP)]:
            prune += (["-o"] if prune else []) + test
        code, out, err = self._exec(["find", ".", "(", *prune, ")", "-prune", "-o", "-type", "f",
                                     "-exec", "stat", "-c", "%Y %s %n", "{}", "+"])
        if code != 0:
            raise ScanError(f"listing {self.workdir} in the notebook failed: {err.strip()[:300]}")
        stats = {}
        for rel, mtime, size in parse_listing(out.decode("utf-8", errors="surrogateescape")):
            if ex.file(rel):
                continue
            if size > self.max_size:
                self.too_big.add(rel)
                continue
            stats[rel] = (mtime, size)
        need = [rel for rel, (m, s) in stats.items() if not trusted(self.cache.get(rel), m, s, grain=1.0)]
        self.fetched = self._fetch(need, strict=True)
        for rel, data in self.fetched.items():
            self.cache[rel] = Cached(stats[rel][0], stats[rel][1], data.digest, now)
        return {rel: Entry(self.cache[rel].digest, m, s) for rel, (m, s) in stats.items()}

    def _fetch(self, paths: list[str], *, strict: bool) -> dict[str, FileData]:
        """Contents by one `tar -c` per chunk; `strict` (while scanning): all of them, or ScanError."""
        out: dict[str, FileData] = {}
        for part in chunks(paths):
            code, data, err = self._exec(["tar", "-c", "-f", "-", *(f"./{p}" for p in part)])
            if code != 0 and strict:
                raise ScanError(f"files changed while they were read; trying again ({err.strip()[:200]})")
            out.update(untar(data))
        return out

    def read(self, paths: list[str]) -> dict[str, FileData]:
        have = {p: self.fetched[p] for p in paths if p in self.fetched}
        return {**have, **self._fetch([p for p in paths if p not in have], strict=False)}

    def write(self, files: Mapping[str, FileData], expect: Expect) -> list[str]:
        skipped: list[str] = []
        for part in chunks(sorted(files)):
            buf, args = io.BytesIO(), []
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel in part:
                    p = PurePosixPath(rel)
                    tmp = str(p.parent / f".{p.name}{TEMP_MARK}{secrets.token_hex(4)}")
                    add(tar, tmp, files[rel])
                    args += [f"./{tmp}", f"./{rel}", stamp(expect.get(rel))]
            code, out, err = self._exec(["sh", "-c", f'tar -x -f - || exit 1; {MOVE}', "sh", *args],
                                        stdin=buf.getvalue())
            skipped += part if code != 0 else skipped_paths(out)
        return skipped

    def delete(self, paths: list[str], expect: Expect) -> list[str]:
        skipped: list[str] = []
        for part in chunks(paths):
            args = [a for rel in part for a in (f"./{rel}", stamp(expect.get(rel)))]
            code, out, _ = self._exec(["sh", "-c", REMOVE, "sh", *args])
            skipped += part if code != 0 else skipped_paths(out)
        return skipped


def add(tar: tarfile.TarFile, name: str, data: FileData) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data.content), int(data.mtime)
    info.mode = 0o755 if data.executable else 0o644
    tar.addfile(info, io.BytesIO(data.content))


def untar(data: bytes) -> dict[str, FileData]:
    out: dict[str, FileData] = {}
    if not data:
        return out
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                out[member.name.removeprefix("./")] = FileData(f.read(), float(member.mtime),
                                                               bool(member.mode & 0o111))
    return out


def skipped_paths(out: bytes) -> list[str]:
    lines = out.decode("utf-8", errors="surrogateescape").splitlines()
    return [line.removeprefix("skipped ./") for line in lines if line.startswith("skipped ./")]
