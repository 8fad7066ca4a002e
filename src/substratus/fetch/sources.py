"""From a URI and the credentials of its secret to the `Source` that reads it.

The scheme picks the backend; each imports its client library (boto3,
huggingface_hub) only when a URI of its scheme is used, so `sub` starts as fast
as before and a machine that only ever fetches https:// needs neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Optional

from substratus.fetch.errors import FetchError
from substratus.fetch.listing import Resolved, Source
from substratus.resources.uris import FileURI, HttpURI, HubURI, S3URI, SourceURI, parse_uri

# The keys a secret may hold for each scheme (docs/uris.md); others are ignored, never logged.
CREDENTIAL_KEYS = {
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
           "AWS_ENDPOINT_URL"),
    "hf": ("HF_TOKEN", "HF_ENDPOINT"),
    "http": ("HTTP_BEARER_TOKEN",),
    "https": ("HTTP_BEARER_TOKEN",),
    "file": (),
}


def parse(uri: str) -> SourceURI:
    try:
        return parse_uri(uri)
    except ValueError as err:
        shown = redact(uri)
        raise FetchError(f"{shown!r}: {err}", uri=shown, hint="see docs/uris.md for the accepted forms") from err


def redact(uri: str) -> str:
    """`uri` with anything between '://' and '@' in its authority replaced (a refused URI is still echoed)."""
    scheme, sep, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"
    return uri


def open_source(uri: str, credentials: Optional[Mapping[str, str]] = None) -> Source:
    """The backend for `uri`, holding a client made from `credentials` (a secret's keys)."""
    parsed = parse(uri)
    creds = dict(credentials or {})
    if isinstance(parsed, S3URI):
        from substratus.fetch.s3 import S3Source
        return S3Source(parsed, creds, raw=uri)
    if isinstance(parsed, HubURI):
        from substratus.fetch.hub import HubSource
        return HubSource(parsed, creds, raw=uri)
    if isinstance(parsed, HttpURI):
        from substratus.fetch.web import WebSource
        return WebSource(parsed, creds, raw=uri)
    assert isinstance(parsed, FileURI)
    from substratus.fetch.local import LocalSource
    return LocalSource(parsed, creds, raw=uri)


def resolve(uri: str, credentials: Optional[Mapping[str, str]] = None, *, unpack: bool = True) -> Resolved:
    """What `uri` stands for now: its files with their sizes and identities (no file body is read,
    except file:// sources, which are hashed)."""
    return resolve_with(open_source(uri, credentials), unpack=unpack)


def resolve_with(source: Source, *, unpack: bool = True) -> Resolved:
    resolved = source.resolve()
    return resolved if unpack or resolved.archive is None else replace(resolved, archive=None)
