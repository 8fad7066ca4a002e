"""Where things live in the artifact store. Pure key arithmetic, no I/O.

The same method names as `controlplane.layout.Layout`, so planners that take a
layout can be given this one on Kubernetes: their mount sources become keys
(`objects/dataset/default/shakespeare/1a2b.../data`) that the Kubernetes runtime
turns into PVC subPaths or object-store staging (runtimes.kubernetes.podspec).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class ArtifactLayout:
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
