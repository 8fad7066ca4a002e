"""The annotations `sub` and the operator put on the custom resources, in one place.

    substratus.ai/state          the operator's typed state of the object (JSON, written by the
                                 operator only; see operator.records)
    substratus.ai/source-dir     a `dir` source that `sub apply` uploaded to the artifact store:
                                 {"dir": ..., "revision": ..., "archive": KEY} (the operator builds
                                 from the tarball at KEY; it cannot read the user's disk)
    substratus.ai/source-commit  the commit `sub apply` saw at the head of a git source's branch:
                                 a new value makes the operator resolve the source again
    substratus.ai/retry          bumped by `sub apply` of an unchanged object that failed: the
                                 cluster's "try again" (a spec change does the same)

Pure, and free of the Kubernetes client: the CLI imports it on its cluster path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

PREFIX = "substratus.ai/"
STATE = PREFIX + "state"
SOURCE_DIR = PREFIX + "source-dir"
SOURCE_COMMIT = PREFIX + "source-commit"
RETRY = PREFIX + "retry"
# What makes the operator treat the object as applied again (resolve its source, forget failures).
APPLY_TRIGGERS = (SOURCE_DIR, SOURCE_COMMIT, RETRY)


@dataclass(frozen=True)
class UploadedDir:
    """A `dir` source as uploaded by `sub apply`."""

    dir: str        # the directory on the machine that applied it (for people)
    revision: str   # content digest of the directory (sources.local.digest), as the local control plane has it
    archive: str    # key of the .tar.gz in the artifact store

    def encode(self) -> str:
        return json.dumps({"dir": self.dir, "revision": self.revision, "archive": self.archive}, sort_keys=True)

    @classmethod
    def decode(cls, text: Optional[str]) -> Optional["UploadedDir"]:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(dir=str(data["dir"]), revision=str(data["revision"]), archive=str(data["archive"]))
        except (ValueError, KeyError, TypeError):
            return None


def annotations_of(body: dict[str, Any]) -> dict[str, str]:
    return dict((body.get("metadata") or {}).get("annotations") or {})


def apply_trigger(body: dict[str, Any]) -> str:
    """Which apply the object is at: the generation (a spec change) and what `sub apply` annotated."""
    meta = body.get("metadata") or {}
    ann = annotations_of(body)
    return "|".join([str(meta.get("generation", 0)), *(ann.get(k, "") for k in APPLY_TRIGGERS)])
