"""Which git URLs and branch names a manifest may carry.

A git URL reaches `git ls-remote` and `git clone` as an argument. A value that
starts with `-` is read as an option (`--upload-pack=<command>` runs a shell
command), `ext::<command>` runs a command through a remote helper, and a URL
with `user:password@` puts a credential in the store, the logs and every
process listing. So only plain transports are accepted: https, http, ssh,
git, file, scp-style `user@host:path`, and absolute paths.

Pure functions raising ValueError with a message that says what to write
instead. Used by the schema (`GitSource`), so `sub apply` refuses before any
git process runs, and again by `sources.git` for callers that bypass the
schema (`sub verify model SOURCE`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SCHEMES = ("https", "http", "ssh", "git", "file")
# git's own list for GIT_ALLOW_PROTOCOL: no ext::, fd:: or other remote helpers.
ALLOWED_PROTOCOLS = ":".join(SCHEMES)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
                  r"|^\[[0-9A-Fa-f:.]+\]$")
USER = re.compile(r"^[A-Za-z0-9._~][A-Za-z0-9._~-]*$")
HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
PASSWORD_LIKE = re.compile(r"^[^/@]*:[^/@]*@")
SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:]+|\[[^\]]+\]):(?P<path>.*)$")
EXAMPLES = "https://host/org/repo, ssh://git@host/org/repo, git@host:org/repo, file:///srv/repo or /srv/repo"
CREDENTIALS_HINT = ("credentials do not belong in a manifest (they would be stored and logged): "
                    "use a git credential helper (`git config --global credential.helper store`) "
                    "or an ssh key (ssh://git@host/org/repo)")


def check_git_url(url: str) -> str:
    """The URL, unchanged, when git may be given it; ValueError saying why not otherwise."""
    if not url:
        raise ValueError(f"must not be empty: give a git URL such as {EXAMPLES}")
    if CONTROL.search(url):
        raise ValueError("must not contain control characters (newlines, tabs, NUL)")
    if url != url.strip():
        raise ValueError("must not start or end with whitespace")
    if url.startswith("-"):
        raise ValueError(f"{url!r} starts with '-', which git would read as an option: give a URL such as {EXAMPLES}")
    if HELPER.match(url):
        raise ValueError(f"{url.split('::', 1)[0]}:: remote helpers are not allowed (they run commands): "
                         f"use {', '.join(s + '://' for s in SCHEMES)}")
    if "://" in url:
        return _check_scheme_url(url)
    if url.startswith("/"):
        return url
    if PASSWORD_LIKE.match(url):
        raise ValueError(f"looks like user:password@host; {CREDENTIALS_HINT}")
    if SCP.match(url) and "/" not in url.split(":", 1)[0]:
        return _check_scp(url)
    raise ValueError(f"{url!r} is not an accepted git URL: use {EXAMPLES} (a relative path would be read "
                     "relative to the control plane, not to the manifest)")


def _check_scheme_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is not allowed: use {', '.join(s + '://' for s in SCHEMES)}")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as err:
        raise ValueError(f"{url!r} is not a valid URL: {err}") from None
    userinfo = parts.netloc.rpartition("@")[0]
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("a file:// URL names an absolute path on this machine: file:///srv/repo")
        return url
    if userinfo:
        _check_userinfo(userinfo, scheme)
    host = parts.hostname or ""  # lower-cased, IPv6 brackets removed
    if not (HOST.match(host) or HOST.match(f"[{host}]")):
        raise ValueError(f"host {host or '(empty)'!r} is not a valid host name")
    return url


def _check_userinfo(userinfo: str, scheme: str) -> None:
    if ":" in userinfo or scheme != "ssh":
        raise ValueError(f"a {scheme}:// URL must not carry a user name or password; {CREDENTIALS_HINT}")
    if not USER.match(userinfo):
        raise ValueError(f"user name {userinfo!r} is not valid (letters, digits, '.', '_', '~', '-'; "
                         "not starting with '-')")


def _check_scp(url: str) -> str:
    m = SCP.match(url)
    assert m is not None
    user, host, path = m.group("user"), m.group("host"), m.group("path")
    if user is not None and not USER.match(user):
        raise ValueError(f"user name {user!r} is not valid (letters, digits, '.', '_', '~', '-'; "
                         "not starting with '-'); a password never belongs in the URL: " + CREDENTIALS_HINT)
    if not HOST.match(host):
        raise ValueError(f"host {host!r} is not a valid host name")
    if not path or path.startswith("-"):
        raise ValueError(f"the repository path after '{host}:' must be given and must not start with '-'")
    return url


BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_branch(branch: str) -> str:
    """A branch name git accepts (`git check-ref-format --branch`), never an option."""
    if not branch:
        return branch
    problems = []
    if branch.startswith("-"):
        problems.append("must not start with '-'")
    if BAD_REF.search(branch):
        problems.append("must not contain spaces, control characters or any of ~ ^ : ? * [ \\")
    if ".." in branch or "@{" in branch or "//" in branch:
        problems.append("must not contain '..', '@{' or '//'")
    if branch.startswith("/") or branch.endswith(("/", ".", ".lock")) or branch == "@":
        problems.append("must not start or end with '/', end with '.' or '.lock', or be '@'")
    if any(part.startswith(".") for part in branch.split("/")):
        problems.append("no part may start with '.'")
    if problems:
        raise ValueError(f"{branch!r} is not a valid branch name: " + "; ".join(problems))
    return branch
