"""Real servers on 127.0.0.1 for the fetch tests: S3 (moto), plain HTTP, and a hub stand-in.

Every server counts what it served (requests, object GETs, body bytes) so a
test can assert what went over the wire, and can be throttled so a kill -9
lands mid-download.

`HubStandIn` is a stand-in for the two endpoints huggingface_hub's client and
our downloader call, shaped after what the client parses
(`HfApi.repo_info(files_metadata=True)`, `hf_hub_url`, `hf_raise_for_status`):

    GET  /api/{models|datasets}/{org}/{repo}[/revision/{rev}]?blobs=true
         -> {"id", "sha", "siblings": [{"rfilename", "size", "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}
    GET|HEAD /[datasets/]{org}/{repo}/resolve/{rev}/{path}
         -> the bytes (LFS files: a 302 to /cdn/{sha256}, as the hub redirects to its CDN)

Gated repositories answer 401 (no token) or 403 (wrong token) with
`X-Error-Code: GatedRepo`, unknown ones 401/404 with `RepoNotFound`. It is not
a copy of the hub: no auth scopes, no xet, no pagination, no commits history.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit, unquote


@dataclass
class Served:
    """What a server sent: one record per request, logged when the request arrives."""

    method: str
    path: str
    status: int
    range: str
    sent: int  # body bytes actually written
    finished: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


@dataclass
class Log:
    """Records in arrival order. Readers wait until the requests logged so far have finished:
    a client can read a reply's last byte before the server thread has counted it."""

    records: list[Served] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: Served) -> Served:
        with self.lock:
            self.records.append(record)
        return record

    def clear(self) -> None:
        with self.lock:
            self.records.clear()

    def settled(self, timeout: float = 30) -> list[Served]:
        with self.lock:
            records = list(self.records)
        for r in records:
            r.finished.wait(timeout)
        return records

    def gets(self, path_part: str = "") -> list[Served]:
        return [r for r in self.settled() if r.method == "GET" and path_part in r.path]

    def bytes_sent(self, path_part: str = "") -> int:
        return sum(r.sent for r in self.gets(path_part))


class Throttle:
    """Bytes per second for bodies; 0 = unlimited. Changeable while serving."""

    def __init__(self) -> None:
        self.rate = 0

    def chunks(self, data: Iterable[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
        for block in data:
            for i in range(0, len(block), size):
                piece = block[i:i + size]
                if self.rate:
                    time.sleep(len(piece) / self.rate)
                yield piece


# -- S3: moto's WSGI app behind a counting, throttling middleware -----------------------------------

class CountingMoto:
    """moto's S3 server (what `moto.server.ThreadedMotoServer` runs) wrapped to count and throttle."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.log = Log()
        self.throttle = Throttle()
        app = DomainDispatcherApplication(create_backend_app)
        self.server = make_server("127.0.0.1", 0, self._middleware(app), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _middleware(self, app: Any) -> Any:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
            status = [0]

            def start(s: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
                status[0] = int(s.split()[0])
                return start_response(s, headers, *rest)

            record = self.log.add(Served(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), 0,
                                         environ.get("HTTP_RANGE", ""), 0))
            body: Any = ()
            try:
                body = app(environ, start)
                throttled = record.method == "GET" and not environ.get("QUERY_STRING")
                for piece in (self.throttle.chunks(body) if throttled else body):
                    record.sent += len(piece)
                    yield piece
            finally:
                record.status = status[0]
                if hasattr(body, "close"):
                    body.close()
                record.finished.set()

        return wrapped

    def object_gets(self, key: str) -> list[Served]:
        """GetObject requests for `key` (listing and bucket GETs excluded)."""
        return [r for r in self.log.gets() if r.path.endswith("/" + key)]

    def start(self) -> "CountingMoto":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


# -- plain HTTP --------------------------------------------------------------------------------------

@dataclass
class File:
    data: bytes
    etag: Optional[str] = None           # None: computed strong ETag; "" : none sent
    last_modified: Optional[float] = 1_700_000_000.0  # None: no Last-Modified
    length: bool = True                  # send Content-Length
    ranges: bool = True                  # honour Range (False: always the whole file, 200)
    cut_after: int = 0                   # >0: the next GET stops after this many body bytes (then reset)


class FileServer:
    """Serves `files` (path -> File) with HEAD, Range and If-Range like a static file server."""

    def __init__(self, *, head: bool = True, token: Optional[str] = None) -> None:
        self.files: dict[str, File] = {}
        self.log = Log()
        self.throttle = Throttle()
        self.head_allowed = head
        self.token = token
        outer = self

        class Handler(_Quiet):
            def do_HEAD(self) -> None:
                outer._serve(self, body=False)

            def do_GET(self) -> None:
                outer._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def put(self, path: str, data: bytes, **kw: Any) -> str:
        self.files[path] = File(data, **kw)
        return f"{self.url}{path}"

    def _serve(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        record = self.log.add(Served(h.command, path, 0, h.headers.get("Range", ""), 0))
        try:
            if not body and not self.head_allowed:
                return _reply(h, record, 405, {}, b"")
            if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
                return _reply(h, record, 401, {}, b"")
            f = self.files.get(path)
            if f is None:
                return _reply(h, record, 404, {}, b"")
            etag = f.etag if f.etag is not None else '"' + hashlib.md5(f.data).hexdigest() + '"'
            headers = {"Accept-Ranges": "bytes"}
            if etag:
                headers["ETag"] = etag
            if f.last_modified is not None:
                headers["Last-Modified"] = email.utils.formatdate(f.last_modified, usegmt=True)
            data, status = _ranged(h, f.data, headers, etag) if f.ranges else (f.data, 200)
            if f.length:
                headers["Content-Length"] = str(len(data))
            if body and f.cut_after:
                cut, f.cut_after = f.cut_after, 0
                return _reply(h, record, status, headers, data[:cut], length=True, close=True,
                              declared=len(data))
            _reply(h, record, status, headers, data if body else b"", throttle=self.throttle, length=f.length)
        finally:
            record.finished.set()

    def start(self) -> "FileServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


def _ranged(h: BaseHTTPRequestHandler, data: bytes, headers: dict[str, str], etag: str) -> tuple[bytes, int]:
    m = re.match(r"^bytes=(\d+)-(\d*)$", h.headers.get("Range", ""))
    if_range = h.headers.get("If-Range")
    if not m or (if_range is not None and if_range not in (etag, headers.get("Last-Modified"))):
        return data, 200
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else len(data) - 1
    if start >= len(data):
        headers["Content-Range"] = f"bytes */{len(data)}"
        return b"", 416
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return data[start:end + 1], 206


def _reply(h: BaseHTTPRequestHandler, record: Served, status: int, headers: dict[str, str], data: bytes,
           *, throttle: Optional[Throttle] = None, length: bool = True, close: bool = False,
           declared: Optional[int] = None) -> None:
    record.status = status
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    if "Content-Length" not in headers and length:
        h.send_header("Content-Length", str(len(data) if declared is None else declared))
    if not length or close:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    try:
        for piece in (throttle.chunks([data]) if throttle else [data]):
            h.wfile.write(piece)
            record.sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        h.close_connection = True


# -- the hub stand-in --------------------------------------------------------------------------------

@dataclass
class Repo:
    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)       # paths stored as LFS (sha256 known)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit; "main" defaults to `commit`
    gated_token: Optional[str] = None                 # set: a gated repo readable with this token only
    corrupt: set[str] = field(default_factory=set)    # paths whose served bytes differ from the listing


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}  # (models|datasets, org/repo) -> Repo
        self.log = Log()
        outer = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                outer._serve(self, body=True)

            def do_HEAD(self) -> None:
                outer._serve(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, repo_id: str, repo: Repo, *, kind: str = "models") -> Repo:
        self.repos[(kind, repo_id)] = repo
        return repo

    def _serve(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = urlsplit(h.path).path
        record = self.log.add(Served(h.command, path, 0, h.headers.get("Range", ""), 0))
        try:
            api = re.match(r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
            resolve = re.match(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            cdn = re.match(r"^/cdn/([0-9a-f]{64})$", path)
            if api:
                self._api(h, record, api.group(1), api.group(2), unquote(api.group(3) or "main"))
            elif resolve:
                kind = "datasets" if resolve.group(1) else "models"
                self._resolve(h, record, kind, resolve.group(2), unquote(resolve.group(3)), unquote(resolve.group(4)),
                              body)
            elif cdn:
                self._cdn(h, record, cdn.group(1), body)
            else:
                _reply(h, record, 404, {"X-Error-Code": "EntryNotFound"}, b"")
        finally:
            record.finished.set()

    def _repo(self, h: BaseHTTPRequestHandler, record: Served, kind: str, repo_id: str) -> Optional[Repo]:
        repo = self.repos.get((kind, repo_id))
        auth = h.headers.get("Authorization", "")
        if repo is None:
            _reply(h, record, 401 if not auth else 404, {"X-Error-Code": "RepoNotFound"}, b'{"error":"not found"}')
            return None
        if repo.gated_token is not None and auth != f"Bearer {repo.gated_token}":
            msg = b'{"error":"Access to model is restricted. You must have access to it and be authenticated."}'
            _reply(h, record, 403 if auth else 401, {"X-Error-Code": "GatedRepo"}, msg)
            return None
        return repo

    def _commit(self, repo: Repo, revision: str) -> Optional[str]:
        if revision == repo.commit or re.fullmatch(r"[0-9a-f]{40}", revision) and revision in repo.branches.values():
            return revision
        return repo.branches.get(revision, repo.commit if revision == "main" else None)

    def _api(self, h: BaseHTTPRequestHandler, record: Served, kind: str, repo_id: str, revision: str) -> None:
        repo = self._repo(h, record, kind, repo_id)
        if repo is None:
            return
        commit = self._commit(repo, revision)
        if commit is None:
            return _reply(h, record, 404, {"X-Error-Code": "RevisionNotFound"}, b'{"error":"revision not found"}')
        siblings = []
        for name, data in sorted(repo.files.items()):
            sib: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if name in repo.lfs:
                sib["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            siblings.append(sib)
        doc = {"_id": "x", "id": repo_id, "sha": commit, "private": False, "siblings": siblings}
        _reply(h, record, 200, {"Content-Type": "application/json"}, json.dumps(doc).encode())

    def _resolve(self, h: BaseHTTPRequestHandler, record: Served, kind: str, repo_id: str, revision: str,
                 name: str, body: bool) -> None:
        repo = self._repo(h, record, kind, repo_id)
        if repo is None:
            return
        if self._commit(repo, revision) is None or name not in repo.files:
            return _reply(h, record, 404, {"X-Error-Code": "EntryNotFound"}, b"")
        data = repo.files[name]
        if name in repo.lfs:
            sha = hashlib.sha256(data).hexdigest()
            return _reply(h, record, 302, {"Location": f"{self.url}/cdn/{sha}", "X-Linked-Etag": f'"{sha}"',
                                           "X-Repo-Commit": repo.commit}, b"")
        if name in repo.corrupt:
            data = bytes([data[0] ^ 1]) + data[1:]
        headers = {"ETag": f'"{git_blob_id(data)}"', "X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        out, status = _ranged(h, data, headers, headers["ETag"])
        _reply(h, record, status, headers, out if body else b"")

    def _cdn(self, h: BaseHTTPRequestHandler, record: Served, sha: str, body: bool) -> None:
        for repo in self.repos.values():
            for name in repo.lfs:
                data = repo.files[name]
                if hashlib.sha256(data).hexdigest() == sha:
                    if name in repo.corrupt:
                        data = data[:-1] + bytes([data[-1] ^ 1])
                    headers = {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
                    out, status = _ranged(h, data, headers, headers["ETag"])
                    return _reply(h, record, status, headers, out if body else b"")
        _reply(h, record, 404, {}, b"")

    def start(self) -> "HubStandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
