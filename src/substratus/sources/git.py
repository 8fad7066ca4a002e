"""Fetch a git source (url, branch, path) into a build context on disk.

The URL is checked again here (`resources.giturl`), for callers that bypass
the schema such as `sub verify model SOURCE`; git only ever gets it after
`--`, with GIT_ALLOW_PROTOCOL limited to plain transports. The repository is
cloned bare into a per-commit cache (shallow from a remote; by git's local
copy from this machine) and the build context is `git archive` of the tree
at `path`: no `.git` directory (and no `.git/config` with a
remote URL in it) ever reaches an image build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from substratus.errors import SourceError
from substratus.resources.giturl import ALLOWED_PROTOCOLS, check_branch, check_git_url
from substratus.sources import ResolvedSource, dockerfile
from substratus.sources.local import check_tree, require_dockerfile

GIT_TIMEOUT = 300
# No remote helpers, whatever the user's or the system's git config says.
GIT_CONFIG = ["-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never"]


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS}
    try:
        return subprocess.run(["git", *GIT_CONFIG, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise SourceError("git is not installed", hint="install git (apt-get install git)") from err
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"git {args[0]} did not finish in {GIT_TIMEOUT}s",
                          hint="check the URL and your network") from err


def _redact(url: str) -> str:
    """Hide credentials in URLs (https://user:token@host) before they reach logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def check_url(url: str, branch: str, field: str) -> None:
    """The schema's checks, for callers that did not go through it."""
    for name, check, value in (("url", check_git_url, url), ("branch", check_branch, branch)):
        try:
            check(value)
        except ValueError as err:
            raise SourceError(f"{field}.{name}: {err}", field=f"{field}.{name}",
                              hint="nothing was fetched; see docs/security.md for the accepted forms") from None


def normalise_url(url: str, base: Path | None = None) -> str:
    """Plain local paths become absolute paths git can clone."""
    if "://" in url or url.startswith("git@") or url.startswith("-") or "::" in url:
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base or Path.cwd()) / p)


def remote_head(url: str, branch: str, field: str) -> str:
    """The commit `branch` (or the default branch) points at, without cloning."""
    check_url(url, branch, field)
    ref = f"refs/heads/{branch}" if branch else "HEAD"
    proc = _git(["ls-remote", "--", url, ref])
    if proc.returncode != 0:
        raise SourceError(f"{field}.url: cannot read git repository {_redact(url)!r}: "
                          f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'git failed'}",
                          field=f"{field}.url",
                          hint=f"check the URL; try `git ls-remote {_redact(url)}` yourself")
    line = proc.stdout.split("\n", 1)[0].strip()
    if not line:
        what = f"branch {branch!r}" if branch else "a default branch"
        raise SourceError(f"{field}.branch: repository {_redact(url)!r} has no {what}",
                          field=f"{field}.branch",
                          hint=f"list its branches with `git ls-remote --heads {_redact(url)}`")
    return line.split()[0]


def _clone(url: str, branch: str, commit: str, cache: Path, field: str) -> tuple[Path, str]:
    """A bare, shallow clone of `branch` in the cache; returns it and the commit it holds."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    repo = cache / f"{key}-{commit[:16]}.git"
    if repo.is_dir():
        return repo, commit
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=cache))
    try:
        local = local_repo(url, cache)
        # A repository on this machine's disk is cloned by git's local copy (its objects hard-linked:
        # ~15 ms here, against ~250 ms for packing a shallow copy through file://); its whole history
        # comes along, which costs nothing when linked.
        args = ["clone", "--quiet", "--bare", "--no-tags", "--single-branch"]
        if local is None:
            args[3:3] = ["--depth", "1"]
        if branch:
            args.append(f"--branch={branch}")
        proc = _git(args + ["--", str(local) if local is not None else url, str(tmp / "repo.git")])
        if proc.returncode != 0:
            raise SourceError(f"{field}.url: git clone of {_redact(url)!r} failed: {proc.stderr.strip()[-300:]}",
                              field=f"{field}.url", hint="check the URL and branch")
        got = _git(["rev-parse", "HEAD"], cwd=tmp / "repo.git").stdout.strip() or commit
        repo = cache / f"{key}-{got[:16]}.git"  # the branch may have moved: the clone is the truth
        settle(tmp / "repo.git", repo)
        return repo, got
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_repo(url: str, cache: Path) -> Path | None:
    """The directory of a repository given as `file:///srv/repo` or `/srv/repo` when it lies on the
    same filesystem as `cache` (so a local clone links its objects instead of copying them all);
    None otherwise, and for anything git would read differently (percent-escapes, a host)."""
    path = url.removeprefix("file://")
    if not path.startswith("/") or "%" in path or ".." in Path(path).parts:
        return None
    try:
        return Path(path) if os.stat(path).st_dev == os.stat(cache).st_dev else None
    except OSError:
        return None


def settle(made: Path, target: Path) -> None:
    """Move a finished clone or export into place; a twin fetched at the same moment (same content,
    same name) may have got there first, which is fine."""
    try:
        os.replace(made, target)
    except OSError:
        if not target.is_dir():
            raise


def _tree(repo: Path, path: str) -> str:
    """The id of the tree at `path` in HEAD, or "" when there is no directory there."""
    spec = f"HEAD:{path}" if path else "HEAD^{tree}"
    oid = _git(["rev-parse", "--verify", "--quiet", spec], cwd=repo).stdout.strip()
    if not oid or _git(["cat-file", "-t", oid], cwd=repo).stdout.strip() != "tree":
        return ""
    return oid


def _export(repo: Path, tree: str, cache: Path, field: str, shown: str) -> Path:
    """`git archive` of `tree` unpacked (links kept inside, no special bits) under the cache."""
    target = cache / f"tree-{tree}"  # one entry per export, so garbage collection can take each alone
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".tree-", dir=cache))
    try:
        proc = subprocess.Popen(["git", *GIT_CONFIG, "archive", "--format=tar", tree], cwd=repo,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(tmp / "ctx", filter="data")
        except tarfile.FilterError as err:
            raise SourceError(f"{field}.path: {shown}/{err.tarinfo.name}: {err}",
                              field=f"{field}.path", hint="links in a source must stay inside it") from None
        finally:
            proc.stdout.close()
            proc.wait(GIT_TIMEOUT)
        (tmp / "ctx").mkdir(exist_ok=True)  # an empty tree archives to nothing
        check_tree(tmp / "ctx", f"{field}.path", shown)
        settle(tmp / "ctx", target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(url: str, branch: str, path: str, cache: Path, field: str = "spec.source.git") -> ResolvedSource:
    commit = remote_head(url, branch, field)
    repo, commit = _clone(url, branch, commit, cache, field)
    # The revision is the git tree of `path`, not the commit: a commit that changes only
    # other parts of the repository must not rebuild (and reload, retrain) this object.
    tree = _tree(repo, path)
    if not tree:
        raise SourceError(f"{field}.path: {path!r} does not exist in {_redact(url)} at "
                          f"{branch or 'the default branch'} ({commit[:7]})",
                          field=f"{field}.path",
                          hint="give the directory (relative to the repository root) that holds the Dockerfile")
    shown = f"{_redact(url)}:{path}" if path else _redact(url)
    context = _export(repo, tree, cache, field, shown)
    require_dockerfile(context, f"{field}.path", f"{path or '(repository root)'} in {_redact(url)}")
    dockerfile.check_context(context, field, f"{path or '(repository root)'} in {_redact(url)}")
    desc = f"git {_redact(url)} @ {branch or 'HEAD'} ({commit[:7]})" + (f" path {path}" if path else "")
    return ResolvedSource(revision=tree, context=context, description=desc, git_url=_redact(url),
                          git_commit=commit, git_path=path)
