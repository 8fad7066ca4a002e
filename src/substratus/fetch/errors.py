"""The errors of fetching a source URI into the cache: a branch of `substratus.errors`.

    SubstratusError                      (substratus.errors)
    └── FetchError                       any fetch problem; `uri` names the source
        ├── AuthError                    credentials missing or refused (401/403, S3 AccessDenied)
        ├── SourceNotFoundError          no such object, prefix, file, repository or revision
        ├── SourceChangedError           the source changed while it was being read: fetch again
        ├── DigestMismatchError          bytes differ from a digest: `expected`, `actual`, `path`
        ├── ArchiveError                 an archive is unreadable, a member would escape the entry or
        │                                is a link or a device, or it unpacks beyond the limits
        └── CacheError                   the cache directory is unusable (permissions, disk full)

Each message says what failed; each hint says what to do next. The control
plane puts the message in the object's condition; the exit status of
`python -m substratus.fetch` is 1 for all of them.
"""

from __future__ import annotations

from substratus.errors import SubstratusError

SECRET_HINT = ("create a secret holding the credentials (`sub secret create NAME ...` with the keys listed in "
               "docs/uris.md) and name it in the object's secretRef")


class FetchError(SubstratusError):
    """A source could not be resolved or fetched."""

    def __init__(self, message: str, *, uri: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.uri = uri


class AuthError(FetchError):
    """The source needs credentials, or refused the ones given."""


class SourceNotFoundError(FetchError):
    """Nothing is at the URI (or the revision does not exist)."""


class SourceChangedError(FetchError):
    """The source changed between resolving it and reading it; a new fetch resolves it again."""


class DigestMismatchError(FetchError):
    """Bytes on disk do not match the digest they must have."""

    def __init__(self, *, uri: str, path: str, expected: str, actual: str, what: str, hint: str = "") -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(f"{uri}: {path or '(entry)'}: {what} mismatch: expected {expected}, got {actual}",
                         uri=uri, hint=hint)


class ArchiveError(FetchError):
    """An archive is unreadable, would write outside its entry, holds links or devices, or is too large."""


class CacheError(FetchError):
    """The cache directory cannot be used."""
