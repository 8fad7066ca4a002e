"""http(s):// sources (one file, or an archive unpacked later), and the ranged reader the hub uses too.

Resolving sends HEAD (or, where HEAD is refused, as by URLs signed for GET
only, a GET of byte 0) and keeps what identifies the bytes: a strong ETag,
else Last-Modified, plus Content-Length. A server that gives neither validator
is "unstable": every fetch downloads it, and the entry is whatever the bytes
hash to. Resuming sends `Range` with `If-Range`: a server whose file changed
answers 200 with the whole new file, which is refused (`SourceChangedError`)
rather than appended. Bodies are read raw (`Accept-Encoding: identity`).

An optional `HTTP_BEARER_TOKEN` in the credentials is sent as
`Authorization: Bearer ...` to the URI's own origin (httpx drops it on a
redirect to another host).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Optional

import httpx

from substratus.fetch.download import Interrupted
from substratus.fetch.errors import SECRET_HINT, AuthError, FetchError, SourceChangedError, SourceNotFoundError
from substratus.fetch.listing import RemoteFile, Resolved, Stream
from substratus.resources.uris import HttpURI

CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
TIMEOUT = httpx.Timeout(30.0, read=60.0)


def http_client(headers: Optional[Mapping[str, str]] = None) -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=TIMEOUT, headers=dict(headers or {}),
                        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))


def auth_headers(credentials: Mapping[str, str]) -> dict[str, str]:
    token = credentials.get("HTTP_BEARER_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


class WebSource:
    def __init__(self, uri: HttpURI, credentials: Mapping[str, str], *, raw: str = "",
                 client: Optional[httpx.Client] = None) -> None:
        self.uri = uri
        self.raw = raw or uri.url
        self.client = client or http_client(auth_headers(credentials))
        self.has_token = bool(credentials.get("HTTP_BEARER_TOKEN"))

    def resolve(self) -> Resolved:
        response = self._metadata()
        etag = response.headers.get("etag", "")
        modified = response.headers.get("last-modified", "")
        size = _total_size(response)
        if etag and not etag.startswith("W/"):
            version, validator = f"etag:{etag}", etag
        elif modified:
            version, validator = f"last-modified:{modified}", modified
        else:
            version, validator = "unstable", ""
        file = RemoteFile(path=self.uri.filename, size=size, version=version, location=self.uri.url,
                          validator=validator)
        # An ETag means something only to the server and URL that gave it: both are part of the identity.
        return Resolved(self.raw, self.uri.url, "file", (file,), archive=self.uri.archive, stable=bool(validator))

    def _metadata(self) -> httpx.Response:
        try:
            response = self.client.head(self.uri.url, headers={"Accept-Encoding": "identity"})
            if response.status_code in (401, 404) or response.is_success:
                check_status(response, self.raw, self.has_token)
                return response
            with self.client.stream("GET", self.uri.url, headers={"Range": "bytes=0-0",
                                                                   "Accept-Encoding": "identity"}) as first:
                check_status(first, self.raw, self.has_token)
                return first
        except httpx.TransportError as err:
            raise FetchError(f"{self.raw}: could not connect: {type(err).__name__}: {err}", uri=self.raw,
                             hint="check the host name and that the server answers") from err

    def open(self, file: RemoteFile, start: int) -> Stream:
        return open_range(self.client, file, start, raw=self.raw, has_token=self.has_token)


def open_range(client: httpx.Client, file: RemoteFile, start: int, *, raw: str, has_token: bool,
               headers: Optional[Mapping[str, str]] = None, immutable: bool = False) -> Stream:
    """GET `file.location` from byte `start` (If-Range on its validator); start=0 in the Stream if it restarts.

    `immutable`: the URL's bytes never change (a hub file at a commit), so a range needs no validator.
    """
    sent = {"Accept-Encoding": "identity", **dict(headers or {})}
    resume = bool(start and (file.validator or immutable))
    if resume:
        sent["Range"] = f"bytes={start}-"
        if file.validator:
            sent["If-Range"] = file.validator
    try:
        response = client.send(client.build_request("GET", file.location, headers=sent), stream=True)
    except httpx.TransportError as err:
        raise Interrupted(f"{type(err).__name__}: {err}") from err
    try:
        if response.status_code >= 500:
            raise Interrupted(f"HTTP {response.status_code}")
        check_status(response, raw, has_token)
        begin = _range_start(response) if response.status_code == 206 else 0
        if resume and response.status_code == 206 and begin != start:
            raise SourceChangedError(f"{raw}: asked for bytes from {start}, the server sent from {begin}", uri=raw)
        if file.validator and _validator(response, file.validator) not in ("", file.validator):
            raise SourceChangedError(f"{raw}: {file.path} changed since it was resolved (now "
                                     f"{_validator(response, file.validator)}, was {file.validator})", uri=raw,
                                     hint="fetch again: the new version is resolved and downloaded")
    except BaseException:
        response.close()
        raise
    return Stream(start=begin, chunks=_chunks(response), close=response.close)


def check_status(response: httpx.Response, raw: str, has_token: bool) -> None:
    code = response.status_code
    if code in (401, 403):
        given = "the token given was refused" if has_token else "no token was given"
        raise AuthError(f"{raw}: authentication required: the server answered {code} ({given})", uri=raw,
                        hint=f"{SECRET_HINT}: HTTP_BEARER_TOKEN for a plain https:// server")
    if code == 404 or code == 410:
        raise SourceNotFoundError(f"{raw}: not found (HTTP {code})", uri=raw, hint="check the URL")
    if not response.is_success:
        raise FetchError(f"{raw}: the server answered HTTP {code}", uri=raw, hint="check the URL and the server")


def _validator(response: httpx.Response, like: str) -> str:
    name = "etag" if like.startswith(('"', "W/")) else "last-modified"
    return str(response.headers.get(name, ""))


def _range_start(response: httpx.Response) -> int:
    m = CONTENT_RANGE.match(response.headers.get("content-range", ""))
    return int(m.group(1)) if m else -1


def _total_size(response: httpx.Response) -> Optional[int]:
    m = CONTENT_RANGE.match(response.headers.get("content-range", ""))
    if response.status_code == 206 and m:
        return int(m.group(3)) if m.group(3) != "*" else None
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() and not response.headers.get("content-encoding") else None


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_raw()  # as received: a chunk buffer would lose its bytes when the connection drops
    except httpx.TransportError as err:
        raise Interrupted(f"{type(err).__name__}: {err}") from err
