"""Reading manifests: YAML/JSON files or directories into validated resources.

Called by the CLI (client side, so that `spec.source.dir` is resolved against
the manifest file's own directory) and by the API (server side, to validate
whatever arrives over HTTP). Pure apart from reading the given files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydantic

from substratus.errors import ValidationError
from substratus.resources.documents import Document, check_duplicates, read_path
from substratus.resources.kinds import canonical_kind
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import API_VERSION, KINDS, Resource


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(err: pydantic.ValidationError) -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        # "function-..." names a validator, "[key]" says a dict key (not its value) was wrong: neither is a field
        loc = [p for p in e["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif e["type"] == "missing":
            msg = "required field is missing"
        problems.append((_loc(loc), msg))
    return problems


def parse_object(doc: Any, *, source: str = "") -> Resource:
    """Validate one decoded document. Raises ValidationError naming field paths."""
    if not isinstance(doc, dict):
        raise ValidationError([("", f"expected a mapping (an object), got {type(doc).__name__}")], source=source)
    problems: list[tuple[str, str]] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(("apiVersion", f"must be {API_VERSION!r}, got {doc.get('apiVersion')!r}"))
    if "kind" not in doc:
        raise ValidationError(problems + [("kind", "required field is missing")], source=source)
    kind = canonical_kind(str(doc["kind"])) if _is_known_kind(doc["kind"]) else None
    if kind is None:
        problems.append(("kind", f"unknown kind {doc['kind']!r}: expected Dataset, Model, ModelServer (or Server) or Notebook"))
        raise ValidationError(problems, source=source)
    body = {k: v for k, v in doc.items() if k != "status"}
    body["kind"] = kind
    try:
        obj = KINDS[kind].model_validate(body)
    except pydantic.ValidationError as err:
        problems.extend(_pydantic_problems(err))
        raise ValidationError(problems, source=source) from None
    if problems:
        raise ValidationError(problems, source=source)
    return obj



def parse_objects(documents: list[Any]) -> list[Resource]:
    """A client's list of manifests, each validated: every problem of every document is named
    (`objects[i]: field`), as is an object given twice; nothing is returned unless all are valid."""
    out: list[Resource] = []
    problems: list[tuple[str, str]] = []
    seen: dict[ObjectKey, int] = {}
    for i, doc in enumerate(documents):
        try:
            obj = parse_object(doc, source=f"objects[{i}]")
        except ValidationError as err:
            problems += [(f"objects[{i}]: {p}" if p else f"objects[{i}]", m) for p, m in err.problems]
            continue
        if obj.key in seen:
            problems.append((f"objects[{i}]", f"{obj.ref} is defined more than once (also objects[{seen[obj.key]}])"))
        seen.setdefault(obj.key, i)
        out.append(obj)
    if problems:
        raise ValidationError(problems, hint="nothing was applied")
    return out

def _is_known_kind(value: Any) -> bool:
    try:
        canonical_kind(str(value))
        return True
    except ValidationError:
        return False


def load_path(path: Path) -> list[Resource]:
    """Every object in a file or a directory of files, validated, dirs resolved.

    All problems of all documents are collected into one ValidationError so a
    user fixes everything in one round.
    """
    return validate_documents(read_path(path))


def validate_documents(docs: list[Document]) -> list[Resource]:
    objects: list[Resource] = []
    errors: list[tuple[str, str]] = []
    for doc in docs:
        try:
            objects.append(parse_object(doc.data, source=doc.source))
        except ValidationError as err:
            errors.extend((f"{doc.source}: {p}" if p else doc.source, m) for p, m in err.problems)
    try:
        check_duplicates(docs)
    except ValidationError as err:
        errors.extend(err.problems)
    if errors:
        raise ValidationError(errors, hint="fix the fields named above; nothing was applied")
    if not objects:
        raise ValidationError([("", "no objects found in the given manifests")])
    return objects
