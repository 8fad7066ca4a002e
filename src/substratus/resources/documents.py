"""Reading manifest files into plain documents, without validating them.

The CLI uses this alone (no pydantic: `sub apply` must start fast) and sends
the documents to the control plane, which validates them with the schemas
(`resources.manifest`). Relative `spec.source.dir` paths are resolved here,
against the manifest file's own directory, because only the client knows
where the file was. Each document remembers where it came from, so the
server's field paths can be reported as `file.yaml (document 2): spec.x`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from substratus.errors import ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.objectkey import ObjectKey

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    data: Any
    source: str           # "path/to/file.yaml" or "path/to/file.yaml (document 2)"
    base: Optional[Path]  # where relative paths in it are resolved from

    def key(self) -> Optional[ObjectKey]:
        """(kind, namespace, name) when the document says them plainly enough, else None."""
        d: dict[str, Any] = self.data if isinstance(self.data, dict) else {}
        meta: dict[str, Any] = d["metadata"] if isinstance(d.get("metadata"), dict) else {}
        try:
            kind = canonical_kind(str(d.get("kind", "")))
        except ValidationError:
            return None
        name = meta.get("name")
        return ObjectKey(kind, str(meta.get("namespace") or "default"), name) if isinstance(name, str) else None


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
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ValidationError([("", f"malformed YAML{where}: {problem}")], source=source,
                              hint="fix the YAML syntax; nothing was applied") from None


def documents_from_text(text: str, source: str, base: Optional[Path]) -> list[Document]:
    docs = load_documents(text, source=source)
    out = []
    for i, data in enumerate(docs):
        doc = Document(data, source + (f" (document {i + 1})" if len(docs) > 1 else ""), base)
        resolve_dir(doc)
        out.append(doc)
    return out


def read_path(path: Path) -> list[Document]:
    """Every document in a file or a directory of files, with `spec.source.dir` made absolute."""
    docs: list[Document] = []
    for file in manifest_files(path):
        docs += documents_from_text(file.read_text(encoding="utf-8"), str(file), file.parent.resolve())
    return docs


def resolve_dir(doc: Document) -> None:
    """Make a relative `spec.source.dir` absolute, relative to the manifest's directory."""
    spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
    source = spec.get("source") if isinstance(spec, dict) else None
    d = source.get("dir") if isinstance(source, dict) else None
    if isinstance(source, dict) and isinstance(d, str) and d and doc.base is not None:
        p = Path(d).expanduser()
        source["dir"] = str(p if p.is_absolute() else (doc.base / p).resolve())


def check_duplicates(docs: list[Document]) -> None:
    seen: set[ObjectKey] = set()
    problems = []
    for doc in docs:
        key = doc.key()
        if key is not None and key in seen:
            problems.append((doc.source, f"{key[0].lower()}/{key[2]} is defined more than once in the applied "
                                         "manifests"))
        if key is not None:
            seen.add(key)
    if problems:
        raise ValidationError(problems, hint="fix the fields named above; nothing was applied")
