"""HTTP/1.1 over the control plane's Unix socket: the little of it that `sub` needs.

`cli.client` used the standard library's http.client; importing it (with the
e-mail parser and ssl it pulls in) cost ~25 ms of every `sub` command, a
tenth of the 0.25 s that `sub get` of 1,000 objects may take. The peer is our
own daemon (uvicorn), reached only after `api.unixsock.connect` checked its
uid. One request per connection (`Connection: close`), as the CLI always
used them; bodies come with a Content-Length, or chunked for the streams
(watch, logs), or run until the daemon closes the connection.

A connection that breaks off or an answer that is not HTTP raises
`BrokenResponse`, a `ConnectionError`, so callers handle it where they handle
a refused or reset connection.
"""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from substratus.api.unixsock import connect

MAX_LINE = 65536  # a status or header line, or a chunk-size line
MAX_HEADERS = 100
CHUNK = 65536
# What http.client refuses in a request target (it then raised InvalidURL, with this message).
NOT_IN_TARGET = re.compile("[\x00-\x20\x7f]")


class BrokenResponse(ConnectionError):
    """The daemon's answer broke off or was not HTTP/1.x."""


class InvalidTarget(ValueError):
    """A request path with a space or control character (a name typed on the command line)."""


class Response:
    """Status, headers (names in lower case) and the body, read once: `read()` or `lines()`."""

    def __init__(self, sock: socket.socket, reader: io.BufferedReader, status: int, headers: dict[str, str],
                 method: str) -> None:
        self.status = status
        self.headers = headers
        self._sock = sock
        self._reader = reader
        self._empty = method == "HEAD" or status in (204, 304) or 100 <= status < 200

    def read(self) -> bytes:
        length = self._length()
        if length is None:
            return b"".join(self._pieces())
        data = self._reader.read(length)
        if len(data) < length:
            raise BrokenResponse(f"the answer broke off after {len(data)} of {length} bytes")
        return data

    def lines(self) -> Iterator[bytes]:
        """The body line by line (each with its b"\\n", the last one perhaps without), as it arrives."""
        rest = b""
        for piece in self._pieces():
            rest += piece
            *done, rest = rest.split(b"\n")
            for line in done:
                yield line + b"\n"
        if rest:
            yield rest

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def _length(self) -> Optional[int]:
        if self._empty:
            return 0
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            return None
        raw = self.headers.get("content-length")
        if raw is None:
            return None
        if not raw.isdigit():
            raise BrokenResponse(f"the answer's Content-Length is not a number: {raw[:40]!r}")
        return int(raw)

    def _pieces(self) -> Iterator[bytes]:
        """The body in the pieces it arrives in."""
        if self._empty:
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            yield from self._chunks()
            return
        length = self._length()
        while length is None or length > 0:
            piece = self._reader.read1(CHUNK if length is None else min(length, CHUNK))
            if not piece:
                if length is not None:
                    raise BrokenResponse(f"the answer broke off with {length} bytes still to come")
                return
            if length is not None:
                length -= len(piece)
            yield piece

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self._line()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BrokenResponse(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailer fields, then the blank line
                    pass
                return
            data = self._reader.read(size)
            if len(data) < size or self._line() not in (b"\r\n", b"\n"):
                raise BrokenResponse("the answer broke off inside a chunk")
            yield data

    def _line(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise BrokenResponse("the answer broke off" if len(line) <= MAX_LINE else "an answer line is too long")
        return line


def request(path: Path, method: str, target: str, headers: dict[str, str], body: Optional[bytes] = None,
            timeout: Optional[float] = None) -> tuple[Response, int]:
    """Send one request to the daemon at `path`; its response (headers read) and the daemon's pid."""
    found = NOT_IN_TARGET.search(target)
    if found:
        raise InvalidTarget(f"URL can't contain control characters. {target!r} (found at least {found.group()!r})")
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity", "Connection: close"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"Invalid header value {value!r}")
        head.append(f"{name}: {value}")
    if body is not None:
        head.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + (body or b"")  # as http.client: ASCII or an error
    sock, pid = connect(path, timeout)
    try:
        sock.sendall(data)
        reader = sock.makefile("rb")
        status, fields = read_head(reader)
    except BaseException:
        sock.close()
        raise
    return Response(sock, reader, status, fields, method), pid


def read_head(reader: io.BufferedReader) -> tuple[int, dict[str, str]]:
    """The status code and header fields of an HTTP/1.x response."""
    status_line = reader.readline(MAX_LINE + 1).decode("latin-1")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise BrokenResponse(f"the daemon did not answer in HTTP/1.1: {status_line[:80]!r}")
    fields: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = reader.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise BrokenResponse("the answer broke off in its headers")
        if line in (b"\r\n", b"\n"):
            return int(parts[1]), fields
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise BrokenResponse(f"a malformed header line: {line[:80]!r}")
        key = name.strip().lower()
        fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
    raise BrokenResponse(f"more than {MAX_HEADERS} header fields")
