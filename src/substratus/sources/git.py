"""Fetch a git source (url, branch, path) into a per-commit checkout cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from substratus.errors import SourceError
from substratus.sources import ResolvedSource
from substratus.sources.local import require_dockerfile

GIT_TIMEOUT = 300


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT,
                              env=env, stdin=subprocess.DEVNULL)
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


def normalise_url(url: str, base: Path | None = None) -> str:
    """Plain local paths become absolute paths git can clone."""
    if "://" in url or url.startswith("git@"):
        return url
    p = Path(url).expanduser()
    return str(p if p.is_absolute() else (base or Path.cwd()) / p)


def remote_head(url: str, branch: str, field: str) -> str:
    """The commit `branch` (or the default branch) points at, without cloning."""
    ref = f"refs/heads/{branch}" if branch else "HEAD"
    proc = _git(["ls-remote", url, ref])
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


def fetch(url: str, branch: str, path: str, cache: Path, field: str = "spec.source.git") -> ResolvedSource:
    commit = remote_head(url, branch, field)
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    checkout = cache / f"{key}-{commit[:16]}"
    if not (checkout / ".git").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=cache))
        args = ["clone", "--quiet", "--depth", "1", "--no-tags", "--single-branch"]
        if branch:
            args += ["--branch", branch]
        proc = _git(args + [url, str(tmp / "repo")])
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SourceError(f"{field}.url: git clone of {_redact(url)!r} failed: {proc.stderr.strip()[-300:]}",
                              field=f"{field}.url", hint="check the URL and branch")
        got = _git(["rev-parse", "HEAD"], cwd=tmp / "repo").stdout.strip()
        if got != commit:
            commit = got  # the branch moved between ls-remote and clone: the clone is the truth
            checkout = cache / f"{key}-{commit[:16]}"
        try:
            os.replace(tmp / "repo", checkout)
        except OSError:
            if not checkout.is_dir():  # not a twin fetched at the same moment (same content): a real error
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    context = (checkout / path) if path else checkout
    if not context.is_dir():
        raise SourceError(f"{field}.path: {path!r} does not exist in {_redact(url)} at "
                          f"{branch or 'the default branch'} ({commit[:7]})",
                          field=f"{field}.path",
                          hint="give the directory (relative to the repository root) that holds the Dockerfile")
    require_dockerfile(context, f"{field}.path", f"{path or '(repository root)'} in {_redact(url)}")
    desc = f"git {_redact(url)} @ {branch or 'HEAD'} ({commit[:7]})" + (f" path {path}" if path else "")
    # The revision is the git tree of `path`, not the commit: a commit that changes only
    # other parts of the repository must not rebuild (and reload, retrain) this object.
    tree = _git(["rev-parse", f"HEAD:{path}" if path else "HEAD^{tree}"], cwd=checkout).stdout.strip()
    return ResolvedSource(revision=tree or commit, context=context, description=desc, git_url=_redact(url),
                          git_commit=commit, git_path=path)
