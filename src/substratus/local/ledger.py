"""Which images this control plane built: one empty file per image id under $SUBSTRATUS_HOME/images.

Image names are shared by every control plane on one engine (`localhost/substratus/<kind>-<ns>-<name>`,
tags made from content), so garbage collection must never remove an image another home built. Source
images carry no owner labels (on podman a LABEL instruction is one more committed layer: 0.2-0.45 s
of every source build, measured), so ownership is recorded here, at the moment a build says which
image it made. Entries of images that no longer exist are dropped when garbage is collected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from substratus.runtimes.base import normalise_id

IMAGE_ID = re.compile(r"^[0-9a-f]{12,128}$")


def normal_id(image_id: str) -> str:
    return normalise_id(image_id.strip())


class BuiltImages:
    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, image_id: str) -> None:
        iid = normal_id(image_id)
        if not IMAGE_ID.match(iid):
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.root / iid, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)

    def __contains__(self, image_id: object) -> bool:
        iid = normal_id(image_id) if isinstance(image_id, str) else ""
        return bool(IMAGE_ID.match(iid)) and (self.root / iid).is_file()

    def ids(self) -> set[str]:
        try:
            return {e.name for e in os.scandir(self.root) if IMAGE_ID.match(e.name)}
        except OSError:
            return set()

    def forget_all_but(self, existing: set[str]) -> int:
        """Drop the entries of images that no longer exist; how many were dropped."""
        gone = self.ids() - {normal_id(i) for i in existing}
        for iid in gone:
            (self.root / iid).unlink(missing_ok=True)
        return len(gone)
