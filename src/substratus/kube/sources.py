"""Resolving `spec.source` on a cluster, where the local control plane resolves it at apply time.

    git   cloned here (`sources.git.fetch`, shallow, into a scratch directory that is removed
          afterwards): the commit, and the git tree of `path` as the revision, as locally, so a
          commit that does not touch `path` rebuilds nothing. BuildKit clones the repository
          itself at that commit for the build (builds.GitContext).
    dir   the user's directory is not on the cluster: `sub apply` uploads it as a tarball and
          annotates the object (annotations.UploadedDir); without that annotation (a plain
          `kubectl apply`) the source cannot be resolved, and the message says how to apply it.

Images we build (`localhost/substratus/...` names, in the cluster's registry) that a
Dockerfile builds FROM are folded into the revision by their registry digest, so a rebuilt
base rebuilds what is made from it (baseimages, as locally). Other bases (python:3.11,
docker.io/...) are folded by name only: the operator does not ask public registries.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from substratus.build import fromlines as baseimages
from substratus.build import naming
from substratus.errors import SourceError
from substratus.reconcile.state import Source
from substratus.resources.schema import Dataset, Model, Resource
from substratus.runtimes.kubernetes.annotations import SOURCE_DIR, UploadedDir
from substratus.sources import git

Lookup = Callable[[str], Optional[str]]  # planner image name -> registry digest, None when absent


def resolve(obj: Resource, annotations: dict[str, str], lookup: Lookup, scratch: Path) -> Optional[Source]:
    """The resolved source of a Dataset or Model built from git or dir; None for other objects.

    Raises SourceError (naming the field) when it cannot be resolved: terminal until re-applied."""
    if not isinstance(obj, (Dataset, Model)):
        return None
    src = obj.spec.source
    if src.git is not None:
        return resolve_git(src.git.url, src.git.branch or "", src.git.path or "", lookup, scratch)
    if src.dir is not None:
        return resolve_dir(src.dir, annotations)
    return None


def resolve_git(url: str, branch: str, path: str, lookup: Lookup, scratch: Path) -> Source:
    scratch.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="git-", dir=scratch))
    try:
        resolved = git.fetch(git.normalise_url(url), branch, path, cache)
        bases = baseimages.fingerprint_with(lambda ref: own_image(ref, lookup), resolved.context)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    revision = naming.digest(resolved.revision, bases) if bases else resolved.revision
    return Source(revision=revision, context="", description=resolved.description, git_url=resolved.git_url,
                  git_commit=resolved.git_commit, git_path=resolved.git_path)


def own_image(ref: str, lookup: Lookup) -> Optional[str]:
    return lookup(ref) if ref.startswith(naming.IMAGE_REPO + "/") else None


def resolve_dir(directory: str, annotations: dict[str, str]) -> Source:
    uploaded = UploadedDir.decode(annotations.get(SOURCE_DIR))
    if uploaded is None:
        raise SourceError(f"spec.source.dir: {directory} is a directory on the machine that applied the manifest; "
                          "the cluster can only build it once `sub` has uploaded it",
                          field="spec.source.dir",
                          hint="apply it with `sub --context CONTEXT apply -f FILE` (it uploads the directory to the "
                               "artifact store), or use a git source")
    if uploaded.dir != directory:
        raise SourceError(f"spec.source.dir: {directory} was changed after `sub apply` uploaded {uploaded.dir}",
                          field="spec.source.dir", hint="apply the manifest again with `sub apply -f FILE`")
    return Source(revision=uploaded.revision, context=uploaded.archive,
                  description=f"dir {uploaded.dir} ({uploaded.revision[:7]})", dir=uploaded.dir)
