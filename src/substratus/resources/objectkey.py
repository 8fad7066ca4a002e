"""Which object: kind, namespace and name, as one named tuple.

Every layer names objects by this key (the store's rows, the work queue's items, the
dependency index, the executors' in-flight sets). A named tuple so that it still unpacks
as `kind, ns, name = key` and hashes and sorts as a tuple does.
"""

from __future__ import annotations

from typing import NamedTuple


class ObjectKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"
