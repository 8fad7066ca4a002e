"""`sub apply` against a cluster: validate, pin sources, upload directories, create or update.

What the local control plane does at apply time happens here, on the machine
that applies, because only it can: a `dir` source is checked (exists, has a
Dockerfile), snapshotted and uploaded to the cluster's artifact store as a
tarball named by its content (`sources/dirs/<sha256>.tar.gz`), and the object
is annotated with it (annotations.UploadedDir) for the operator to build from;
a git source's branch is looked up (`git ls-remote`, no clone: a URL or branch
that does not exist is refused before anything is stored) and the commit is
annotated, so a new commit makes the operator resolve the source again.

The result per object is what the local API says: `created`, `configured` (the
spec or its source changed), `retried` (unchanged, but it had failed: the
operator forgets the failure), `unchanged`.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Optional

from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactStore, pack
from substratus.errors import SourceError, ValidationError
from substratus.reconcile.conditions import ready_reason
from substratus.resources.reasons import FAILED
from substratus.resources.schema import Dataset, Model, Resource
from substratus.runtimes.kubernetes import annotations as ann
from substratus.runtimes.kubernetes.client import merge_patch
from substratus.sources import git, local

FAILED_REASONS = frozenset(r.value for r in FAILED)


def desired_body(obj: Resource) -> dict[str, Any]:
    """The object as stored: defaults filled in (as the CRD's defaults would), no status."""
    body = obj.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"status": True})
    body["metadata"] = {k: v for k, v in body["metadata"].items() if k in ("name", "namespace", "labels")}
    return body


def source_annotations(obj: Resource, store: Optional[ArtifactStore], *, upload: bool = True) -> dict[str, str]:
    """What the operator needs to know of the source that only this machine can find out.

    With upload=False (a server-side dry run) `dir` sources are snapshotted and packed, so
    the annotation is what a real apply would write, but nothing is sent to the store."""
    if not isinstance(obj, (Dataset, Model)):
        return {}
    src = obj.spec.source
    try:
        if src.git is not None:
            commit = git.remote_head(git.normalise_url(src.git.url), src.git.branch or "", "spec.source.git")
            return {ann.SOURCE_COMMIT: commit}
        if src.dir is not None:
            return {ann.SOURCE_DIR: upload_dir(src.dir, store, upload=upload).encode()}
    except SourceError as err:
        raise ValidationError([(f"{obj.ref}: {err.field}" if err.field else obj.ref,
                                err.message.split(": ", 1)[-1] if err.field else err.message)],
                              hint=(err.hint + "; " if err.hint else "") + "nothing was applied") from err
    return {}


def upload_dir(directory: str, store: Optional[ArtifactStore], *, upload: bool = True) -> ann.UploadedDir:
    """Snapshot a directory (as the local control plane does) and upload it as a tarball."""
    if store is None and upload:
        raise SourceError("spec.source.dir: the cluster has no artifact store this machine can write to",
                          field="spec.source.dir",
                          hint="install with `sub kube install --artifact-store s3://...` and give this machine "
                               "credentials for it (AWS_* env), or use a git source")
    with tempfile.TemporaryDirectory(prefix="sub-dir-") as cache:
        snap = local.snapshot(directory, Path(cache))
        data = pack(snap.context)
    key = ArtifactLayout().source_archive(hashlib.sha256(data).hexdigest())
    if upload and store is not None and not store.exists(key):
        store.write_bytes(key, data)
    return ann.UploadedDir(dir=directory, revision=snap.revision, archive=str(key))


def failed(current: dict[str, Any]) -> bool:
    status = current.get("status") or {}
    if status.get("observedGeneration") != (current.get("metadata") or {}).get("generation"):
        return False
    return ready_reason(status) in FAILED_REASONS


def change(current: Optional[dict[str, Any]], desired: dict[str, Any],
           sources: dict[str, str]) -> tuple[str, Optional[dict[str, Any]]]:
    """(result, what to send): a whole object to create, a merge patch, or None (nothing to do)."""
    if current is None:
        created = {**desired, "metadata": {**desired["metadata"], "annotations": dict(sources)}}
        return "created", created
    meta = current.get("metadata") or {}
    labels = desired["metadata"].get("labels") or {}
    have = meta.get("annotations") or {}
    same = (current.get("spec") == desired.get("spec") and all((meta.get("labels") or {}).get(k) == v
                                                                for k, v in labels.items())
            and all(have.get(k) == v for k, v in sources.items()))
    if same and not failed(current):
        return "unchanged", None
    patch: dict[str, Any] = {"metadata": {"annotations": dict(sources)}}
    if labels:
        patch["metadata"]["labels"] = labels
    if same:  # re-applying is how a person says "try again"
        count = str(have.get(ann.RETRY, ""))
        patch["metadata"]["annotations"][ann.RETRY] = str((int(count) if count.isdigit() else 0) + 1)
        return "retried", patch
    if current.get("spec") != desired.get("spec"):
        patch["spec"] = merge_patch(current.get("spec") or {}, desired.get("spec") or {})
    return "configured", patch
