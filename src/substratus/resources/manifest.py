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
import yaml

from substratus.errors import ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.schema import API_VERSION, KINDS, Resource

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


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
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
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


def _is_known_kind(value: Any) -> bool:
    try:
        canonical_kind(str(value))
        return True
    except ValidationError:
        return False


def manifest_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if not files:
            raise ValidationError([("", f"no manifest files (*.yaml, *.yml, *.json) in directory {path}")])
        return files
    if not path.exists():
        raise ValidationError([("", f"no such file or directory: {path}")], hint="check the path given to -f")
    return [path]


def load_documents(text: str, *, source: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ValidationError([("", f"malformed YAML{where}: {problem}")], source=source,
                              hint="fix the YAML syntax; `sub apply` stored nothing") from None


def resolve_dirs(obj: Resource, base: Path) -> Resource:
    """Make `spec.source.dir` absolute, relative to the manifest file's directory."""
    source = getattr(obj.spec, "source", None)
    if source is not None and getattr(source, "dir", None):
        d = Path(source.dir).expanduser()
        source.dir = str((base / d).resolve() if not d.is_absolute() else d)
    return obj


def load_path(path: Path) -> list[Resource]:
    """Every object in a file or a directory of files, validated, dirs resolved.

    All problems of all documents are collected into one ValidationError so a
    user fixes everything in one round.
    """
    objects: list[Resource] = []
    errors: list[tuple[str, str]] = []
    for file in manifest_files(path):
        docs = load_documents(file.read_text(encoding="utf-8"), source=str(file))
        for i, doc in enumerate(docs):
            where = f"{file}" + (f" (document {i + 1})" if len(docs) > 1 else "")
            try:
                objects.append(resolve_dirs(parse_object(doc, source=where), file.parent.resolve()))
            except ValidationError as err:
                errors.extend((f"{where}: {p}" if p else where, m) for p, m in err.problems)
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        if obj.key in seen:
            errors.append((obj.ref, "defined more than once in the applied manifests"))
        seen.add(obj.key)
    if errors:
        raise ValidationError(errors, hint="fix the fields named above; nothing was applied")
    if not objects:
        raise ValidationError([("", f"no objects found in {path}")])
    return objects
