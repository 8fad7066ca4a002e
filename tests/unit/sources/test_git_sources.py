"""Hole 1 and 3 of issue 7: git URLs cannot run commands or carry credentials, and a git
source's build context is `git archive` output (no .git). Real git, no engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from substratus.errors import SourceError, ValidationError
from substratus.resources.giturl import check_branch, check_git_url
from substratus.resources.manifest import parse_object
from substratus.sources import git

GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]

GOOD_URLS = ["https://github.com/org/repo", "http://host:8080/x.git", "ssh://git@host/org/repo", "ssh://host:22/x",
             "git://host/x", "file:///srv/repo", "file://localhost/srv/r", "/srv/repo", "git@github.com:org/repo.git",
             "host:path/x", "ssh://[::1]/x"]
BAD_URLS = {
    "--upload-pack=touch /tmp/PWNED;://x": "starts with '-'",
    "-x": "starts with '-'",
    "ext::sh -c touch% /tmp/x": "remote helpers",
    "fd::3": "remote helpers",
    "https://user:pw@host/x": "credential helper",
    "https://token@host/x": "credential helper",
    "ssh://u:p@h/x": "credential helper",
    "u:p@h:x": "credential helper",
    "ftp://h/x": "scheme 'ftp'",
    "./rel": "relative path",
    "~/repo": "not an accepted git URL",
    "file://otherhost/x": "absolute path on this machine",
    "ssh://-oProxyCommand=x/y": "not a valid host",
    "a\nb": "control characters",
    "git@host:-x": "must not start with '-'",
    "": "must not be empty",
}


@pytest.mark.parametrize("url", GOOD_URLS)
def test_plain_transports_are_accepted(url: str) -> None:
    assert check_git_url(url) == url


@pytest.mark.parametrize("url", sorted(BAD_URLS))
def test_dangerous_or_credential_urls_are_refused_saying_why(url: str) -> None:
    with pytest.raises(ValueError, match=BAD_URLS[url].replace("(", r"\(").replace("[", r"\[")):
        check_git_url(url)


@pytest.mark.parametrize("branch", ["-x", "--upload-pack=x", "a..b", "a b", "x.lock", ".hidden", "a//b", "a:b"])
def test_bad_branch_names_are_refused(branch: str) -> None:
    with pytest.raises(ValueError):
        check_branch(branch)


def manifest(url: str, branch: str = "") -> dict[str, object]:
    return {"apiVersion": "substratus.ai/v1", "kind": "Model", "metadata": {"name": "m"},
            "spec": {"source": {"git": {"url": url, "branch": branch}}}}


def test_schema_refuses_the_upload_pack_url_with_the_field_path() -> None:
    with pytest.raises(ValidationError) as e:
        parse_object(manifest("--upload-pack=touch /tmp/PWNED;://x"))
    assert e.value.problems[0][0] == "spec.source.git.url"
    with pytest.raises(ValidationError) as e:
        parse_object(manifest("https://host/x", branch="--output=/etc/x"))
    assert e.value.problems[0][0] == "spec.source.git.branch"


def test_sources_git_refuses_before_running_git_even_without_the_schema(tmp_path: Path) -> None:
    """The issue's reproduction: this URL used to make `git ls-remote` run `touch`."""
    marker = tmp_path / "PWNED"
    for url in (f"--upload-pack=touch {marker};://x", f"ext::sh -c touch% {marker}"):
        with pytest.raises(SourceError) as e:
            git.fetch(git.normalise_url(url), "", "", tmp_path / "cache")
        assert e.value.field == "spec.source.git.url"
    with pytest.raises(SourceError):
        git.fetch("/nonexistent", f"--upload-pack=touch {marker}", "", tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache").exists(), "nothing may be fetched for a refused URL"


def test_git_itself_refuses_remote_helpers_through_our_environment(tmp_path: Path) -> None:
    """Defence in depth: even if a helper URL slipped past the checks, GIT_ALLOW_PROTOCOL stops it."""
    marker = tmp_path / "PWNED"
    proc = git._git(["ls-remote", "--", f"ext::sh -c touch% {marker}"])
    assert proc.returncode != 0 and not marker.exists()


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "models" / "m").mkdir(parents=True)
    (repo / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
    (repo / "models" / "m" / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
    (repo / "models" / "m" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "models" / "m" / "run.sh").chmod(0o755)
    (repo / "models" / "m" / "link").symlink_to("run.sh")
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "remote", "add", "origin", "https://user:secret@example.invalid/x"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "."], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "x"], cwd=repo, check=True)
    return repo


@pytest.mark.parametrize("path", ["", "models/m"])
def test_build_context_is_an_archive_without_git_metadata(tmp_path: Path, path: str) -> None:
    repo = make_repo(tmp_path)
    got = git.fetch(f"file://{repo}", "", path, tmp_path / "cache")
    names = {p.relative_to(got.context).as_posix() for p in got.context.rglob("*")}
    assert "Dockerfile" in names
    assert not any(n == ".git" or n.startswith(".git/") for n in names), names
    assert not any("secret" in p.read_text(errors="replace") for p in got.context.rglob("*") if p.is_file())
    if path:
        assert (got.context / "run.sh").stat().st_mode & 0o100, "the executable bit survives the archive"
        assert (got.context / "link").is_symlink()
    again = git.fetch(f"file://{repo}", "", path, tmp_path / "cache")
    assert again.revision == got.revision and again.context == got.context


def test_a_symlink_leaving_a_git_source_is_refused_naming_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "models" / "m" / "escape").symlink_to("/etc/passwd")
    subprocess.run([*GIT, "add", "."], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "escape"], cwd=repo, check=True)
    with pytest.raises(SourceError) as e:
        git.fetch(f"file://{repo}", "", "models/m", tmp_path / "cache")
    assert "escape" in e.value.message and e.value.field == "spec.source.git.path"


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    with pytest.raises(SourceError) as e:
        git.fetch(f"file://{repo}", "", "models/nope", tmp_path / "cache")
    assert e.value.field == "spec.source.git.path" and "does not exist" in e.value.message


def test_a_repository_on_this_disk_is_cloned_locally_and_follows_new_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert git.local_repo(f"file://{repo}", cache) == repo and git.local_repo(str(repo), cache) == repo
    for other in (f"file://{repo}%20x", "https://example.invalid/x", f"file://{tmp_path}/none", "file://host/srv/x"):
        assert git.local_repo(other, cache) is None, other
    first = git.fetch(f"file://{repo}", "", "models/m", cache)
    (repo / "models" / "m" / "run.sh").write_text("#!/bin/sh\necho changed\n")
    subprocess.run([*GIT, "commit", "-qam", "change"], cwd=repo, check=True)
    second = git.fetch(f"file://{repo}", "", "models/m", cache)
    assert second.git_commit != first.git_commit and second.revision != first.revision
    assert (second.context / "run.sh").read_text() == "#!/bin/sh\necho changed\n"
    subprocess.run([*GIT, "checkout", "-qb", "side"], cwd=repo, check=True)
    (repo / "models" / "m" / "run.sh").write_text("#!/bin/sh\necho side\n")
    subprocess.run([*GIT, "commit", "-qam", "side"], cwd=repo, check=True)
    on_main = git.fetch(str(repo), "main", "models/m", cache)
    assert (on_main.context / "run.sh").read_text() == "#!/bin/sh\necho changed\n"
