"""A small OCI distribution registry for the emulated cluster: what BuildKit would push to.

Serves the read side of the distribution API over plain HTTP (catalogue, tags,
manifests with `Docker-Content-Digest`, config blobs, manifest deletion), so the
operator's `RegistryClient` reads it as it reads a real registry. The simulated
builder (kubelet.py's controllers, in the pipeline test) `push`es an image when a
builder Job's pod succeeds, with the config a real build of that Dockerfile would have
(WORKDIR, labels).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Registry:
    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], bytes] = {}   # (repo, tag or digest) -> manifest
        self.blobs: dict[str, bytes] = {}
        self.pushed: list[str] = []                          # references, in push order
        self.lock = threading.Lock()
        self.host = ""

    def push(self, ref: str, config: dict[str, Any]) -> str:
        """Store an image (`host/repo:tag`) with this config; returns the manifest digest."""
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        blob = json.dumps({"architecture": "amd64", "os": "linux", "config": config}).encode()
        config_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": [],
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_digest, "size": len(blob)}}).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        with self.lock:
            self.blobs[config_digest] = blob
            self.manifests[(repo, tag)] = self.manifests[(repo, digest)] = manifest
            self.pushed.append(ref)
        return digest

    def has(self, ref: str) -> bool:
        repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
        with self.lock:
            return (repo, tag) in self.manifests

    def handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                with registry.lock:
                    repos = sorted({repo for repo, _ in registry.manifests})
                    if path in ("/v2", "/v2/"):
                        return self._send(200, b"{}")
                    if path == "/v2/_catalog":
                        return self._send(200, json.dumps({"repositories": repos}).encode())
                    for repo in repos:
                        prefix = f"/v2/{repo}/"
                        if not path.startswith(prefix):
                            continue
                        what, _, ref = path[len(prefix):].partition("/")
                        if what == "tags" and ref == "list":
                            tags = sorted(t for r, t in registry.manifests if r == repo and not t.startswith("sha256:"))
                            return self._send(200, json.dumps({"name": repo, "tags": tags}).encode())
                        if what == "manifests" and (repo, ref) in registry.manifests:
                            body = registry.manifests[(repo, ref)]
                            digest = "sha256:" + hashlib.sha256(body).hexdigest()
                            return self._send(200, body, {"Content-Type": MANIFEST, "Docker-Content-Digest": digest})
                        if what == "blobs" and ref in registry.blobs:
                            return self._send(200, registry.blobs[ref], {"Content-Type": "application/json"})
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

            def do_DELETE(self) -> None:  # noqa: N802
                path = self.path
                with registry.lock:
                    gone = [k for k in registry.manifests if path == f"/v2/{k[0]}/manifests/{k[1]}"]
                    for key in gone:
                        registry.manifests.pop(key)
                return self._send(202 if gone else 404)

        return Handler


@contextmanager
def serve() -> Iterator[Registry]:
    registry = Registry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), registry.handler())
    registry.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="test-registry", daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
