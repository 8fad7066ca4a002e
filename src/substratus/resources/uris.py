"""Which source URIs a Model's weights or a Dataset's data may name, parsed.

`Model.spec.source.weights.uri` and `Dataset.spec.source.uri` name bytes
somewhere else that `substratus.fetch` brings into the shared cache:

    s3://BUCKET/KEY            one object; s3://BUCKET/PREFIX/ (trailing '/') every object under it;
                               s3://BUCKET/KEY without '/' that is not an object is tried as KEY/
    file:///ABS/PATH           a file or a directory on the machine running the control plane
    https://HOST/PATH          one file; .tar, .tar.gz, .tgz and .zip are unpacked (http:// too)
    hf://ORG/REPO[@REV][/SUB]  a Hugging Face hub model repo at a branch, tag or commit (default
                               main), optionally only a sub-path; hf://datasets/ORG/REPO[...] for
                               a dataset repo

Pure functions raising ValueError whose message says what is wrong and which
forms are accepted: the schema turns them into field-path errors, so `sub apply`
refuses before anything is fetched; `substratus.fetch` parses again for
callers that bypass the schema (its command line). Credentials never belong in
a URI (they would be stored, logged and shown by `sub get`): user:password@
is refused and the hint names the secret instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal, Optional, Union
from urllib.parse import unquote, urlsplit

FORMS = ("s3://BUCKET/KEY or s3://BUCKET/PREFIX/, file:///ABSOLUTE/PATH, https://HOST/PATH "
         "(a file, or a .tar, .tar.gz, .tgz or .zip archive to unpack), hf://ORG/REPO[@REVISION][/SUB/PATH] "
         "or hf://datasets/ORG/REPO[@REVISION][/SUB/PATH]")
CREDENTIALS_HINT = ("credentials do not belong in a URI (it is stored, logged and shown): put them in a secret "
                    "(`sub secret create`) and name it in secretRef")
ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")  # longest first: .tar.gz before .tar
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$")
IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
# S3's rules for new buckets (3-63 characters, lower case, digits, '.', '-'; starts and ends alphanumeric).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# The hub's own rule for an org or repo name (huggingface_hub.utils._validators.REPO_ID_REGEX).
HUB_NAME = re.compile(r"^(?!-)(?!.*--)(?!.*\.\.)[A-Za-z0-9._-]{1,96}(?<![.-])$")
HUB_REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
HUB_TYPES = {"datasets": "dataset", "models": "model"}
MAX_URI = 4096


@dataclass(frozen=True)
class S3URI:
    bucket: str
    key: str          # the object key or prefix, without a leading '/'; "" is the whole bucket
    prefix_only: bool  # the URI ended in '/' (or named the bucket): a prefix, never one object
    scheme: Literal["s3"] = "s3"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" + ("/" if self.prefix_only and self.key else "")


@dataclass(frozen=True)
class FileURI:
    path: str  # absolute, normalised, percent-decoded
    scheme: Literal["file"] = "file"

    def __str__(self) -> str:
        return f"file://{self.path}"


@dataclass(frozen=True)
class HttpURI:
    url: str                 # as given (the scheme lower-cased)
    filename: str            # the last path segment, percent-decoded ("download" when the path is '/')
    archive: Optional[str]   # ".tar", ".tar.gz", ".tgz", ".zip" or None
    scheme: Literal["http", "https"] = "https"

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class HubURI:
    repo_id: str              # ORG/REPO
    repo_type: Literal["model", "dataset"]
    revision: Optional[str]   # None: the repo's default branch (main)
    subpath: str              # "" for the whole repo, else a relative path without '..'
    scheme: Literal["hf"] = "hf"

    def __str__(self) -> str:
        kind = "datasets/" if self.repo_type == "dataset" else ""
        rev = f"@{self.revision.replace('/', '%2F')}" if self.revision else ""
        return f"hf://{kind}{self.repo_id}{rev}" + (f"/{self.subpath}" if self.subpath else "")


SourceURI = Union[S3URI, FileURI, HttpURI, HubURI]


def check_uri(uri: str) -> str:
    """The URI, unchanged, when it parses; ValueError saying why not otherwise (for schema validators)."""
    parse_uri(uri)
    return uri


def parse_uri(uri: str) -> SourceURI:
    """Parse a source URI; ValueError naming the problem and the accepted forms otherwise."""
    if not uri:
        raise ValueError(f"must not be empty: give one of {FORMS}")
    if len(uri) > MAX_URI:
        raise ValueError(f"is {len(uri)} characters long; at most {MAX_URI} are accepted")
    if CONTROL.search(uri) or uri != uri.strip():
        raise ValueError("must not contain control characters (newlines, tabs, NUL) or surrounding whitespace")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"{uri!r} has no scheme: give one of {FORMS}")
    parsers: dict[str, Callable[[str, str], SourceURI]] = {"s3": _parse_s3, "file": _parse_file, "http": _parse_http, "https": _parse_http, "hf": _parse_hub}
    if scheme not in parsers:
        raise ValueError(f"scheme {scheme + '://'!r} is not accepted: give one of {FORMS}")
    _refuse_userinfo(scheme, rest)
    return parsers[scheme](scheme, rest)


def _refuse_userinfo(scheme: str, rest: str) -> None:
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        what = "a user name and password" if ":" in authority.rpartition("@")[0] else "a user name"
        raise ValueError(f"a {scheme}:// URI must not carry {what} before '@'; {CREDENTIALS_HINT}")


def _safe_relative(path: str, what: str) -> str:
    """`path` (may be empty) when none of its segments is '..' or '.'; the result has no empty segments."""
    parts = [p for p in path.split("/") if p != ""]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{what} {path!r} must not contain '.' or '..' segments")
    return "/".join(parts)


def _parse_s3(scheme: str, rest: str) -> S3URI:
    bucket, _, key = rest.partition("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"bucket {bucket or '(empty)'!r} is not a valid S3 bucket name (3-63 characters: "
                         f"lower-case letters, digits, '.', '-'); give s3://BUCKET/KEY or s3://BUCKET/PREFIX/")
    if "?" in key or "#" in key:
        raise ValueError("an s3:// URI names a key or prefix only: no '?query' or '#fragment'")
    clean = _safe_relative(key, "key")
    return S3URI(bucket=bucket, key=clean, prefix_only=key.endswith("/") or not clean)


def _parse_file(scheme: str, rest: str) -> FileURI:
    netloc, slash, path = rest.partition("/")
    if netloc not in ("", "localhost") or not slash:
        raise ValueError("a file:// URI names an absolute path on this machine, e.g. file:///srv/models/tiny "
                         "(three slashes; no host)")
    if "?" in path or "#" in path:
        raise ValueError("a file:// URI must not carry '?query' or '#fragment'")
    decoded = unquote("/" + path)
    if "\x00" in decoded:
        raise ValueError("a file:// path must not contain NUL")
    clean = _safe_relative(decoded, "path")
    return FileURI(path="/" + clean)


def _parse_http(scheme: str, rest: str) -> HttpURI:
    url = f"{scheme}://{rest}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError on a port that is not a number
    except ValueError as err:
        raise ValueError(f"{url!r} is not a valid URL: {err}") from None
    host = parts.hostname or ""
    if not (HOST.match(host) or (":" in host and IPV6.match(host))):
        raise ValueError(f"host {host or '(empty)'!r} is not a valid host name; give https://HOST/PATH")
    if parts.fragment:
        raise ValueError("an http(s):// URI must not carry a '#fragment' (it is never sent to the server)")
    name = unquote(PurePosixPath(parts.path).name) if parts.path not in ("", "/") else ""
    if "/" in name or name in (".", ".."):
        raise ValueError(f"the last path segment {name!r} is not a usable file name")
    lower = name.lower()
    archive = next((a for a in ARCHIVES if lower.endswith(a) and len(lower) > len(a)), None)
    return HttpURI(url=url, filename=name or "download", archive=archive,
                   scheme="https" if scheme == "https" else "http")


def _parse_hub(scheme: str, rest: str) -> HubURI:
    if "?" in rest or "#" in rest:
        raise ValueError("an hf:// URI must not carry '?query' or '#fragment'; pin a revision with @REVISION")
    segments = rest.split("/")
    repo_type: Literal["model", "dataset"] = "model"
    if segments[0] in HUB_TYPES:
        repo_type = "dataset" if segments[0] == "datasets" else "model"
        segments = segments[1:]
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise ValueError(f"hf://{rest} does not name a repository: give hf://ORG/REPO[@REVISION][/SUB/PATH] "
                         "(the organisation or user is required, e.g. hf://openai-community/gpt2)")
    org, repo_rev = segments[0], segments[1]
    repo, at, revision = repo_rev.partition("@")
    for label, value in (("organisation", org), ("repository", repo)):
        if not HUB_NAME.match(value):
            raise ValueError(f"{label} name {value!r} is not a valid hub name (letters, digits, '.', '_', '-'; "
                             "no '--' or '..'; at most 96 characters)")
    rev = unquote(revision) if at else None
    if at and (not rev or not HUB_REVISION.match(rev) or ".." in rev or rev.startswith(("/", "-"))):
        raise ValueError(f"revision {revision!r} is not a branch, tag or commit (write '/' inside a revision "
                         "as %2F, e.g. @refs%2Fpr%2F1)")
    subpath = _safe_relative("/".join(segments[2:]), "sub-path")
    return HubURI(repo_id=f"{org}/{repo}", repo_type=repo_type, revision=rev, subpath=subpath)
