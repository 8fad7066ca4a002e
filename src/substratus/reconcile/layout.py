"""Where things live under $SUBSTRATUS_HOME. Pure path arithmetic, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def instance(self) -> str:
        """A short stable id for this home, put on every container name and label."""
        return hashlib.sha256(str(self.home).encode()).hexdigest()[:6]

    @property
    def db(self) -> Path:
        return self.home / "state.db"

    @property
    def token_file(self) -> Path:
        return self.home / "token"

    @property
    def socket(self) -> Path:
        """The API's Unix socket: what the CLI talks to (see api.unixsock)."""
        return self.home / "api.sock"

    @property
    def endpoint_file(self) -> Path:
        return self.home / "controlplane.json"

    @property
    def daemon_log(self) -> Path:
        return self.home / "controlplane.log"

    @property
    def git_cache(self) -> Path:
        return self.home / "sources" / "git"

    @property
    def dir_cache(self) -> Path:
        return self.home / "sources" / "dirs"

    @property
    def built_images(self) -> Path:
        """The ids of the images this control plane built (`local.ledger`)."""
        return self.home / "images"

    def object_dir(self, kind: str, namespace: str, name: str) -> Path:
        return self.home / "objects" / kind.lower() / namespace / name

    def run_dir(self, kind: str, namespace: str, name: str, key: str) -> Path:
        """One load or training run: data/ or trained/, logs/, job.log, .succeeded."""
        return self.object_dir(kind, namespace, name) / key[:16]

    def build_log(self, kind: str, namespace: str, name: str) -> Path:
        return self.object_dir(kind, namespace, name) / "build.log"

    def artifact_url(self, path: Path) -> str:
        """How an artifact is published in status (`file://` here; object storage on a cluster)."""
        return path.as_uri()

    def artifact_path(self, url: str) -> Path:
        """The inverse of `artifact_url`, for a dependent that mounts the artifact."""
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise ValueError(f"not a local artifact URL: {url!r}")
        return Path(unquote(parsed.path))
