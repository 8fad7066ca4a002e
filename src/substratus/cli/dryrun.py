"""`sub apply --dry-run=client`: validate manifests here, contact nothing, print what would be sent.

Meant for CI pipelines and editors: it needs no control plane and no engine.
It validates with the same pydantic schemas the control plane uses (imported
here only, so plain `sub apply` stays fast) and prints the objects as the
control plane would store them, defaults filled in. What only the control
plane can check (references to stored objects, git URLs, Dockerfiles) is
`--dry-run=server`'s job.
"""

from __future__ import annotations

from typing import Any

from substratus.cli import output
from substratus.errors import ValidationError
from substratus.resources.documents import Document
from substratus.resources.manifest import validate_documents
from substratus.resources.references import references

SYSTEM_META = ("generation", "resourceVersion", "uid", "creationTimestamp")


def client_dry_run(docs: list[Document], fmt: str) -> str:
    """Validated objects (raises ValidationError naming file and field), rendered for stdout."""
    objects = validate_documents(docs)
    check_batch_references(objects)
    if fmt == "table":
        return "\n".join(f"{o.kind.lower()}/{o.name} valid (dry run: client)" for o in objects)
    sent = [to_wire(o) for o in objects]
    return output.dump(sent[0] if len(sent) == 1 else {"items": sent}, fmt)


def to_wire(obj: Any) -> dict[str, Any]:
    body: dict[str, Any] = obj.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"status": True})
    body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in SYSTEM_META}
    return body


def check_batch_references(objects: list[Any]) -> None:
    """An object may not refer to itself; references to objects outside the batch are the server's to check."""
    problems = []
    for o in objects:
        spec = o.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        if o.key in references(o.kind, o.namespace, spec):
            problems.append((f"{o.ref}: spec", f"{o.kind.lower()} {o.name!r} cannot refer to itself"))
    if problems:
        raise ValidationError(problems, hint="fix the fields named above; nothing was sent")
