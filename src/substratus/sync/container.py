"""`ContainerDir`: a directory inside a running container, as a sync `Side`, over `Runtime.exec`.

Every operation is one `exec` of tools any contract image has (its scripts
need a shell; busybox and coreutils both have find, xargs, stat, tar, sh): a
scan is one `find -print0 | xargs -0 stat`, changed files come back in one
`tar -c` (hashed here, and kept for this round's copies), writes go in as one
tar of temporary files that a small sh loop renames into place only where the
file is still what the scan saw. Paths are passed as arguments (never pasted
into a script) and are relative to the working directory, as `exec` runs there.

Nothing the container answers is trusted (code in the notebook can replace
find, stat and tar): names come NUL-separated and are matched against stat's
lines byte for byte, every path must pass `sync.paths.problem` and the
excludes, and a tar member counts only if it is a regular file, one of the
paths asked for, and no bigger than the listing said and the size limit.
"""

from __future__ import annotations

import io
import re
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
from substratus.sync.paths import problem
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


# Per batch of names: the names, NUL-terminated, then an empty name; stat's lines for them, then a NUL.
# A name that vanished between find and stat has no line: names are matched, never counted. `.` goes
# last only when find succeeded (find -type f never prints it): without it the listing is incomplete.
LIST = ('{ find . "$@" && printf ".\\0"; } | xargs -0 -r sh -c '
        '\'printf "%s\\0" "$@"; printf "\\0"; stat -c "%Y %s %n" "$@"; printf "\\0"\' sh')
STAT_LINE = re.compile(rb"([0-9]{1,12}) ([0-9]{1,19}) ")
DONE = b"."


def parse_listing(out: bytes) -> tuple[list[tuple[str, float, int]], bool]:
    """LIST's output -> ([(path relative to the directory, mtime, size)], whether find finished).
    A path counts only where stat's line for it is exactly `<mtime> <size> <the name find gave>\\n`."""
    found: list[tuple[str, float, int]] = []
    pos, last = 0, b""
    while pos < len(out):
        names: list[bytes] = []
        while True:
            end = out.find(b"\0", pos)
            if end < 0:
                return found, False
            name, pos = out[pos:end], end + 1
            if not name:
                break
            names.append(name)
        end = out.find(b"\0", pos)
        lines, pos = out[pos:len(out) if end < 0 else end], len(out) if end < 0 else end + 1
        cursor = 0
        for name in names:
            last = name
            m = STAT_LINE.match(lines, cursor)
            if m and lines.startswith(name + b"\n", m.end()):
                cursor = m.end() + len(name) + 1
                if name.startswith(b"./"):
                    found.append((name[2:].decode("utf-8", "surrogateescape"), float(m.group(1)), int(m.group(2))))
    return found, last == DONE


class ContainerDir:
    def __init__(self, runtime: Runtime, container: str, workdir: str, excludes: Callable[[], Excludes], *,
                 max_size: int = DEFAULT_MAX_SIZE, label: str = "notebook", clock: Callable[[], float] = time.time,
                 timeout: float = 120) -> None:
        self.runtime, self.container, self.workdir = runtime, container, workdir
        self.excludes, self.max_size, self.label, self.clock, self.timeout = excludes, max_size, label, clock, timeout
        self.cache: dict[str, Cached] = {}
        self.fetched: dict[str, FileData] = {}
        self.too_big: set[str] = set()
        self.refused: dict[str, str] = {}

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
        code, out, err = self._exec(["sh", "-c", LIST, "sh", "(", *prune, ")", "-prune", "-o", "-type", "f",
                                     "-print0"])
        if code != 0:
            raise ScanError(f"listing {self.workdir} in the notebook failed: {err.strip()[:300]}")
        listing, complete = parse_listing(out)
        if not complete:
            raise ScanError(f"listing {self.workdir} in the notebook did not finish; trying again")
        stats = {}
        for rel, mtime, size in listing:
            why = problem(rel)
            if why:
                self.refused[rel] = why
                continue
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
        return {rel: Entry(self.cache[rel].digest, m, s) for rel, (m, s) in stats.items() if rel in self.cache}

    def _fetch(self, paths: list[str], *, strict: bool) -> dict[str, FileData]:
        """Contents by one `tar -c` per chunk; `strict` (while scanning): all of them, or ScanError."""
        out: dict[str, FileData] = {}
        for part in chunks([p for p in paths if not problem(p)]):
            code, data, err = self._exec(["tar", "-c", "-f", "-", *(f"./{p}" for p in part)])
            if code != 0 and strict:
                raise ScanError(f"files changed while they were read; trying again ({err.strip()[:200]})")
            got = untar(data, set(part), self.max_size)
            if strict and len(got) != len(part):
                raise ScanError("the notebook's tar did not send every file asked for; trying again")
            out.update(got)
        return out

    def read(self, paths: list[str]) -> dict[str, FileData]:
        have = {p: self.fetched[p] for p in paths if p in self.fetched}
        return {**have, **self._fetch([p for p in paths if p not in have], strict=False)}

    def write(self, files: Mapping[str, FileData], expect: Expect) -> list[str]:
        skipped: list[str] = sorted(p for p in files if problem(p))
        for part in chunks(sorted(p for p in files if not problem(p))):
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
        skipped: list[str] = [p for p in paths if problem(p)]
        for part in chunks([p for p in paths if not problem(p)]):
            args = [a for rel in part for a in (f"./{rel}", stamp(expect.get(rel)))]
            code, out, _ = self._exec(["sh", "-c", REMOVE, "sh", *args])
            skipped += part if code != 0 else skipped_paths(out)
        return skipped


def add(tar: tarfile.TarFile, name: str, data: FileData) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data.content), int(data.mtime)
    info.mode = 0o755 if data.executable else 0o644
    tar.addfile(info, io.BytesIO(data.content))


def untar(data: bytes, wanted: set[str], max_size: int = DEFAULT_MAX_SIZE) -> dict[str, FileData]:
    """The regular files of a tar stream that were asked for (`wanted`, matched exactly after one
    leading `./`) and fit `max_size`; every other member is ignored unread."""
    out: dict[str, FileData] = {}
    if not data:
        return out
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if (not member.isfile() or name not in wanted or problem(name) or name in out
                        or member.size > max_size):
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    out[name] = FileData(f.read(max_size + 1)[:max_size], float(member.mtime),
                                         bool(member.mode & 0o111))
    except tarfile.TarError:
        pass  # a stream cut short or not a tar at all: what was read so far, checked, stands
    return out


def skipped_paths(out: bytes) -> list[str]:
    lines = out.decode("utf-8", errors="surrogateescape").splitlines()
    return [line.removeprefix("skipped ./") for line in lines if line.startswith("skipped ./")]
