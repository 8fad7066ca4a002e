"""What a source's Dockerfile may ask of the builder: refuse what the builder cannot confine.

A source (a git repository, a directory) is not trusted, but its Dockerfile is run by the
engine's builder as root. Builders have had escapes that a Dockerfile alone triggers:

- CVE-2024-1753 (buildah < 1.35.1, so podman < 4.9.4 / 5.0.1; Debian 12 ships 1.28):
  `RUN --mount=type=bind,from=STAGE,source=/link,...,rw` where /link -> / in STAGE binds the
  host's root read-write (checked here: a dir Model read a 0600 host file and wrote one).
- CVE-2024-21626 (runc < 1.1.12): `WORKDIR /proc/self/fd/N` leaves the host's directory open
  to the build step and to containers of the image.
- BuildKit's Leaky Vessels (CVE-2024-23651/23652/23653, BuildKit < 0.12.5): cache mounts and
  mount teardown, and custom frontends (`# syntax=`) that ask the daemon for more.

So a RUN instruction may have only these flags: `--mount` of type bind (a read-only part of
the build context, no `from`, no `..`, no propagation options: CVE-2024-9407), tmpfs or
secret (the secrets issue's way in), each with its plain options only, and
`--network=none|default`; no variables in flags, no cache mounts (shared by every build on the
engine, so one source could plant what another build then runs), no `# syntax=` directive
other than the official docker/dockerfile frontend, no WORKDIR under /proc. ONBUILD triggers
are checked as the instructions they will become. `check_text` is pure; `check_context` reads
the files a build would use (podman prefers Containerfile to Dockerfile) and raises a
SourceError naming the field and the line. Called wherever a source becomes a build context
(`local.require_dockerfile`, so dir and git sources alike, locally and on a cluster).
"""

from __future__ import annotations

import csv
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from substratus.errors import SourceError

BUILD_FILES = ("Containerfile", "Dockerfile")
TARGET = {"type", "target", "dst", "destination"}
MOUNT_KEYS = {"bind": TARGET | {"source", "src", "ro", "readonly"},
              "tmpfs": TARGET | {"size", "tmpfs-size"},
              "secret": TARGET | {"id", "required", "mode", "uid", "gid", "env"}}
NETWORKS = {"none", "default"}
SYNTAX_OK = re.compile(r"^(docker\.io/)?docker/dockerfile(-upstream)?(:[A-Za-z0-9._-]+)?(@sha256:[0-9a-f]{64})?$")
DIRECTIVE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(.*?)\s*$")
HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")
WHY = {
    "from": "CVE-2024-1753: a bind mount from another stage or image can reach the host's root (buildah < 1.35.1)",
    "cache": "a cache mount is shared by every build on the engine: one source could plant files another "
             "build then runs",
    "escape": "a bind mount may only read the build context",
    "proc": "CVE-2024-21626: a working directory under /proc can leave a host directory open (runc < 1.1.12)",
}


@dataclass(frozen=True)
class Problem:
    line: int      # 1-based line of the instruction in the file
    text: str      # what is refused and why

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str   # upper case
    args: str      # the rest, continuation lines joined


def instructions(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """The parser directives and the instructions of a Dockerfile, continuation lines joined.
    Heredoc bodies are skipped (they are the command's input, not instructions)."""
    lines = text.splitlines()
    directives: dict[str, str] = {}
    i = 0
    while i < len(lines) and (m := DIRECTIVE.match(lines[i].strip())) and m.group(1).lower() not in directives:
        directives[m.group(1).lower()] = m.group(2)
        i += 1
    escape = "`" if directives.get("escape") == "`" else "\\"
    out: list[Instruction] = []
    while i < len(lines):
        start, raw = i, lines[i]
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        parts = [raw]
        while parts[-1].rstrip().endswith(escape) and i < len(lines):
            parts[-1] = parts[-1].rstrip()[:-1]
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue  # comment lines inside a continued instruction are dropped, as the builders do
            parts.append(nxt)
        joined = " ".join(p.strip() for p in parts)
        for tag in HEREDOC.findall(joined):
            while i < len(lines) and lines[i].strip() != tag:
                i += 1
            i += 1
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start + 1, keyword.upper(), args.strip()))
    return directives, out


def leading_flags(args: str) -> list[str]:
    """The `--name=value` flags at the start of an instruction's arguments."""
    flags = []
    for word in args.split():
        if not word.startswith("--"):
            break
        flags.append(word)
    return flags


def check_text(text: str) -> list[Problem]:
    """Everything in one Dockerfile that the builder cannot be trusted to confine."""
    directives, found = instructions(text)
    problems: list[Problem] = []
    syntax = directives.get("syntax")
    if syntax is not None and not SYNTAX_OK.match(syntax):
        problems.append(Problem(1, f"`# syntax={syntax}` runs a frontend image of the source's choosing inside "
                                   "the builder; only docker/dockerfile is allowed"))
    for ins in found:
        problems += [Problem(ins.line, t) for t in check_instruction(ins.keyword, ins.args)]
    return problems


def check_instruction(keyword: str, args: str) -> list[str]:
    if keyword == "ONBUILD":
        inner, _, rest = args.partition(" ")
        return [f"ONBUILD {t}" for t in check_instruction(inner.upper(), rest.strip())]
    if keyword == "WORKDIR" and under_proc(args):
        return [f"WORKDIR {args.strip()}: {WHY['proc']}"]
    if keyword != "RUN":
        return []
    return [t for flag in leading_flags(args) for t in check_run_flag(flag)]


def under_proc(workdir: str) -> bool:
    path = posixpath.normpath("/" + workdir.strip().strip("\"'").lstrip("/"))
    return path == "/proc" or path.startswith("/proc/")


def check_run_flag(flag: str) -> list[str]:
    name, _, value = flag[2:].partition("=")
    if "$" in flag:
        return [f"RUN {flag}: variables are not allowed in RUN flags (what they expand to cannot be checked)"]
    if name == "network":
        return [] if value in NETWORKS else [f"RUN {flag}: only --network=none or --network=default is allowed"]
    if name == "mount":
        return check_mount(flag, value)
    return [f"RUN {flag}: only --mount and --network flags are allowed on RUN"]


def check_mount(flag: str, spec: str) -> list[str]:
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        return [f"RUN {flag}: cannot be read"]
    opts: dict[str, str] = {}
    for f in fields:
        key, _, val = f.partition("=")
        opts[key.strip().lower()] = val.strip()
    kind = opts.get("type", "bind")
    if "from" in opts:
        return [f"RUN {flag}: `from=` is refused; {WHY['from']}"]
    if kind == "cache":
        return [f"RUN {flag}: type=cache is refused; {WHY['cache']}"]
    if kind not in MOUNT_KEYS:
        return [f"RUN {flag}: type={kind} is refused; allowed: bind (read-only, from the context), tmpfs, secret"]
    if "rw" in opts or "readwrite" in opts:
        return [f"RUN {flag}: a bind mount must be read-only (no rw); {WHY['escape']}"]
    unknown = sorted(set(opts) - MOUNT_KEYS[kind])
    if unknown:  # bind-propagation is CVE-2024-9407 (buildah < 1.37.4); the rest is not needed to build
        return [f"RUN {flag}: option {unknown[0]!r} is refused for type={kind}"]
    source = opts.get("source", opts.get("src", ""))
    if kind == "bind" and ".." in source.split("/"):
        return [f"RUN {flag}: source {source!r} leaves the build context; {WHY['escape']}"]
    return []


def check_context(context: Path, field: str, where: str) -> None:
    """SourceError naming `field`, the file and each refused line, when a build file of `context`
    asks for something the builder cannot confine."""
    for name in BUILD_FILES:
        path = context / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        problems = check_text(text)
        if problems:
            shown = "; ".join(str(p) for p in problems[:5]) + ("; ..." if len(problems) > 5 else "")
            raise SourceError(f"{field}: {name} in {where} asks the builder for what it cannot confine: {shown}",
                              field=field, hint="remove those flags or instructions (docs/security.md, "
                                                "'Builds', lists what a Dockerfile may use)")
