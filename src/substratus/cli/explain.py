"""`sub explain KIND[.field.path]`: what a field is, read from the schemas that validate manifests.

kubectl's habit: before writing a manifest, ask what a field means. The
answer comes from the pydantic models in `resources.schema` (and
`resources.status`) — type, default, allowed values, bounds, description —
so it cannot drift from what `sub apply` accepts. Imported only when run.
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from substratus.errors import ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.schema import API_VERSION, KINDS

BOUNDS = (("ge", "minimum"), ("gt", "greater than"), ("le", "maximum"), ("lt", "less than"),
          ("min_length", "minimum length"), ("max_length", "maximum length"))
INDENT = "    "


@dataclass
class TypeInfo:
    """What an annotation means to a person: `[]string`, the allowed values, the nested object."""

    name: str
    allowed: list[Any] = field(default_factory=list)
    model: Optional[type[BaseModel]] = None


def type_info(annotation: Any) -> TypeInfo:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_info(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return type_info(rest[0]) if len(rest) == 1 else TypeInfo(" | ".join(type_info(a).name for a in rest))
    if origin is typing.Literal:
        return TypeInfo(scalar_name(type(args[0])), allowed=list(args))
    if origin is list:
        inner = type_info(args[0])
        return TypeInfo("[]" + inner.name, inner.allowed, inner.model)
    if origin is dict:
        inner = type_info(args[1])
        return TypeInfo("map[string]" + inner.name, inner.allowed, inner.model)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return TypeInfo("Object", model=annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return TypeInfo("string", allowed=[m.value for m in annotation])
    return TypeInfo(scalar_name(annotation))


def scalar_name(t: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(t, "object")


def wire_name(name: str, info: FieldInfo) -> str:
    return info.alias or name


def find_field(model: type[BaseModel], part: str) -> Optional[tuple[str, FieldInfo]]:
    """A field by its manifest (camelCase) name, or its Python name."""
    for name, info in model.model_fields.items():
        if part in (wire_name(name, info), name):
            return wire_name(name, info), info
    return None


@dataclass
class Target:
    kind: str
    path: list[str]                  # wire names, after the kind
    model: Optional[type[BaseModel]]  # the object type at the end of the path (None for a scalar)
    info: Optional[FieldInfo]         # the field at the end of the path (None for the kind itself)


def resolve(text: str) -> Target:
    """`model.spec.training` -> the Training field of ModelSpec; ValidationError naming the bad part."""
    kind_word, *parts = [p for p in text.strip().split(".")]
    kind = canonical_kind(kind_word, field="KIND")
    model: Optional[type[BaseModel]] = KINDS[kind]
    info: Optional[FieldInfo] = None
    path: list[str] = []
    for part in parts:
        found = find_field(model, part) if model is not None else None
        if found is None:
            here = ".".join([kind.lower(), *path])
            choices = ", ".join(wire_name(n, i) for n, i in model.model_fields.items()) if model else ""
            raise ValidationError([(".".join([*path, part]) or part, f"{kind} has no field {part!r} here" +
                                    (f"; {here} has: {choices}" if choices else f"; {here} is a scalar"))],
                                  hint=f"see `sub explain {here}`")
        name, info = found
        path.append(name)
        model = type_info(info.annotation).model
    return Target(kind, path, model, info)


def default_of(info: FieldInfo) -> Optional[str]:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return None
    else:
        value = info.default
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True, mode="json")
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value).replace("'", '"')


def bounds_of(info: FieldInfo) -> list[tuple[str, Any]]:
    return [(label, getattr(m, attr)) for m in info.metadata for attr, label in BOUNDS
            if getattr(m, attr, None) is not None]


def field_summary(name: str, info: FieldInfo) -> str:
    t = type_info(info.annotation)
    required = " -required-" if info.is_required() else ""
    return f"{name}\t<{t.name}>{required}"


def render(target: Target, recursive: bool) -> str:
    lines = [f"KIND:     {target.kind}", f"VERSION:  {API_VERSION}", ""]
    if target.info is not None:
        t = type_info(target.info.annotation)
        lines += [f"FIELD:    {target.path[-1]} <{t.name}>", f"PATH:     {'.'.join(target.path)}", ""]
        default = default_of(target.info)
        lines.append(f"DEFAULT:  {default}" if default is not None else "REQUIRED: yes")
        if t.allowed:
            lines.append("ALLOWED:  " + ", ".join(str(v) for v in t.allowed))
        lines += [f"{label.upper() + ':':<10}{value}" if len(label) < 9 else f"{label.upper()}: {value}"
                  for label, value in bounds_of(target.info)]
        lines.append("")
    lines += ["DESCRIPTION:", INDENT + describe(target)]
    if target.model is not None and target.model.model_fields:
        lines += ["", "FIELDS:"] + (tree(target.model, 1) if recursive else fields_list(target.model))
    return "\n".join(lines)


def describe(target: Target) -> str:
    if target.info is not None and target.info.description:
        return target.info.description
    doc = (target.model.__doc__ or "") if target.model is not None else ""
    return " ".join(doc.split()) or "(no description)"


def fields_list(model: type[BaseModel]) -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        out.append(INDENT + field_summary(wire_name(name, info), info).replace("\t", "  "))
        if info.description:
            out.append(INDENT * 2 + info.description)
        out.append("")
    return out[:-1]


def tree(model: type[BaseModel], depth: int) -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        out.append(INDENT * depth + field_summary(wire_name(name, info), info).replace("\t", "  "))
        nested = type_info(info.annotation).model
        if nested is not None and depth < 8:
            out += tree(nested, depth + 1)
    return out


def complete_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Kinds, then field paths: `model.sp` -> `model.spec`."""
    try:
        if "." not in incomplete:
            return [k for k in ("dataset", "model", "modelserver", "notebook") if k.startswith(incomplete.lower())]
        parent, _, prefix = incomplete.rpartition(".")
        model = resolve(parent).model
        if model is None:
            return []
        return [f"{parent}.{wire_name(n, i)}" for n, i in model.model_fields.items()
                if wire_name(n, i).startswith(prefix)]
    except Exception:  # noqa: BLE001 - completion stays silent whatever went wrong
        return []


@click.command()
@click.argument("target", metavar="KIND[.FIELD.PATH]", shell_complete=complete_path)
@click.option("-r", "--recursive", is_flag=True, help="Show every field below, as a tree.")
def explain(target: str, recursive: bool) -> None:
    """Describe a kind or one of its fields: type, default, allowed values, description.

    \b
    Examples:
      sub explain model
      sub explain model.spec.training.params.batchSize
      sub explain notebook.spec --recursive
    """
    click.echo(render(resolve(target), recursive))
