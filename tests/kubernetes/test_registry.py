"""image_info from a registry: the distribution API served over HTTP with a real image's
manifest and config (`podman save --format oci-dir` of a fixture image), behind the
anonymous bearer-token challenge registries use, with an index to resolve."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from substratus.runtimes.kubernetes.registry import RegistryClient, split_ref
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings
from tests.fixtures.contract.prepare import prepare_fixture
from tests.requirements import require

pytestmark = pytest.mark.kubeplay
REPO = "substratus/model-default-tiny"


@pytest.fixture(scope="module")
def oci_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require(shutil.which("podman") is not None, "podman is not installed (run `make setup`)")
    root = tmp_path_factory.mktemp("registry")
    tag = f"localhost/substratus/registry-test:{uuid.uuid4().hex[:6]}"
    ctx = prepare_fixture("model-shell", root / "ctx")
    subprocess.run(["podman", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True, timeout=300)
    try:
        subprocess.run(["podman", "save", "--format", "oci-dir", "-o", str(root / "oci"), tag], check=True,
                       capture_output=True, timeout=300)
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, timeout=120)
    yield root / "oci"


class Registry(BaseHTTPRequestHandler):
    blobs: Path
    manifest_digest: str
    index: bytes
    port: int

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
        if self.path.startswith("/token"):
            return self._send(200, json.dumps({"token": "anonymous-pull"}).encode())
        if self.headers.get("Authorization") != "Bearer anonymous-pull":
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": (
                f'Bearer realm="http://127.0.0.1:{self.port}/token",service="test",scope="repository:{REPO}:pull"')})
        if self.path.startswith("/v2/_catalog"):
            return self._send(200, json.dumps({"repositories": [REPO, "other/thing"]}).encode())
        prefix = f"/v2/{REPO}/"
        if self.path == prefix + "tags/list":
            return self._send(200, json.dumps({"name": REPO, "tags": ["0123456789abcdef"]}).encode())
        if not self.path.startswith(prefix):
            return self._send(404)
        kind, _, ref = self.path[len(prefix):].partition("/")
        if kind == "manifests" and ref == "multi":
            return self._send(200, self.index, {"Content-Type": "application/vnd.oci.image.index.v1+json"})
        if kind == "manifests" and ref in ("0123456789abcdef", self.manifest_digest):
            body = (self.blobs / self.manifest_digest.split(":")[1]).read_bytes()
            return self._send(200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                          "Docker-Content-Digest": self.manifest_digest})
        if kind == "blobs" and (self.blobs / ref.split(":")[-1]).is_file():
            return self._send(200, (self.blobs / ref.split(":")[-1]).read_bytes())
        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    def do_DELETE(self) -> None:  # noqa: N802
        self._send(405, b'{"errors":[{"code":"UNSUPPORTED"}]}')


@pytest.fixture
def registry(oci_dir: Path) -> Iterator[str]:
    digest = json.loads((oci_dir / "index.json").read_text())["manifests"][0]["digest"]
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "0" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    Registry.blobs, Registry.manifest_digest = oci_dir / "blobs" / "sha256", digest
    Registry.index, Registry.port = json.dumps(index).encode(), server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_image_config_is_read_through_the_token_challenge(registry: str) -> None:
    client = RegistryClient(insecure_hosts=(registry,))
    info = client.image_info(f"{registry}/{REPO}:0123456789abcdef")
    assert info is not None
    assert info.workdir == "/model"
    assert info.env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert info.id.startswith("sha256:")


def test_an_index_resolves_to_linux_amd64(registry: str) -> None:
    info = RegistryClient(insecure_hosts=(registry,)).image_info(f"{registry}/{REPO}:multi")
    assert info is not None and info.workdir == "/model"


def test_a_missing_image_is_none_and_deletion_refused_is_false(registry: str) -> None:
    client = RegistryClient(insecure_hosts=(registry,))
    assert client.image_info(f"{registry}/{REPO}:nope") is None
    assert client.delete(f"{registry}/{REPO}:0123456789abcdef") is False


def test_the_runtime_lists_and_reads_images_by_the_planners_names(registry: str) -> None:
    """`localhost/substratus/x:h` is what planners ask for; the runtime reads `<registry>/x:h`."""
    settings = KubeSettings(registry=f"{registry}/substratus", registry_insecure=True)
    runtime = KubernetesRuntime(api=None, settings=settings)  # type: ignore[arg-type]  # no API needed here
    local = "localhost/substratus/model-default-tiny:0123456789abcdef"
    images = runtime.images()
    assert list(images) == [local] and images[local].startswith("sha256:")
    info = runtime.image_info(local)
    assert info is not None and info.workdir == "/model"
    assert runtime.image_info("localhost/substratus/model-default-tiny:missing") is None


@pytest.mark.parametrize("ref,expected", [
    ("registry.example.com/substratus/m:h", ("registry.example.com", "substratus/m", "h")),
    ("127.0.0.1:5000/a/b:t", ("127.0.0.1:5000", "a/b", "t")),
    ("localhost/substratus/x:y", ("localhost", "substratus/x", "y")),
    ("busybox", ("registry-1.docker.io", "library/busybox", "latest")),
    ("moby/buildkit:v0.23.2-rootless", ("registry-1.docker.io", "moby/buildkit", "v0.23.2-rootless")),
    ("ghcr.io/o/i@sha256:" + "a" * 64, ("ghcr.io", "o/i", "sha256:" + "a" * 64)),
])
def test_references_split(ref: str, expected: tuple[str, str, str]) -> None:
    assert split_ref(ref) == expected
