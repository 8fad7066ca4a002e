"""Where things live in the artifact store. Pure key arithmetic, no I/O.

The same method names as `reconcile.layout.Layout`, so planners that take a
layout can be given this one on Kubernetes: their mount sources become keys
(`objects/dataset/default/shakespeare/1a2b.../data`) that the Kubernetes runtime
turns into PVC subPaths or object-store staging (runtimes.kubernetes.podspec).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class ArtifactLayout:
    store: str = ""   # the store URL (settings.artifactStore), for the URLs published in status
    prefix: str = ""  # inside the store URL's own prefix; normally empty

    def _root(self) -> PurePosixPath:
        return PurePosixPath(self.prefix.strip("/") or ".")

    def object_dir(self, kind: str, namespace: str, name: str) -> PurePosixPath:
        return self._root() / "objects" / kind.lower() / namespace / name

    def run_dir(self, kind: str, namespace: str, name: str, key: str) -> PurePosixPath:
        """One load or training run: data/ or trained/, logs/."""
        return self.object_dir(kind, namespace, name) / key[:16]

    def build_log(self, kind: str, namespace: str, name: str) -> PurePosixPath:
        return self.object_dir(kind, namespace, name) / "build.log"

    def source_archive(self, digest: str) -> PurePosixPath:
        """A `dir` source uploaded by `sub` as a tarball, named by its content hash."""
        return self._root() / "sources" / "dirs" / f"{digest}.tar.gz"

    def artifact_url(self, path: PurePosixPath) -> str:
        """How an artifact is published in status: `s3://bucket/prefix/objects/...` (a key in the store)."""
        return f"{self.store.rstrip('/')}/{str(path).strip('/')}"

    def artifact_path(self, url: str) -> PurePosixPath:
        """The inverse of `artifact_url`: the key a dependent mounts."""
        base = self.store.rstrip("/") + "/"
        if not self.store or not url.startswith(base):
            raise ValueError(f"not an artifact of {self.store or '(no store)'}: {url!r}")
        return PurePosixPath(url[len(base):])
