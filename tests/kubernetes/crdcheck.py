"""Validate a custom resource against a generated CRD the way the API server does.

Two passes, like kube-apiserver: the structural `openAPIV3Schema` (with
`jsonschema`; unknown fields refused, as with kubectl's default
`--validate=strict` / `fieldValidation=Strict`), then every CEL rule in
`x-kubernetes-validations`, evaluated with `cel-python` with `self` bound to
the node the rule sits on. Used by test_crd.py and the emulator harness.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema


def _strict(node: Any) -> Any:
    """Objects with declared properties refuse unknown fields; x-kubernetes-* keywords dropped."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in out and "additionalProperties" not in out and \
            not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _cel_problems(schema: dict[str, Any], value: Any, path: str, env: celpy.Environment) -> list[str]:
    problems = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if program.evaluate({"self": celpy.json_to_cel(value)}) != celpy.celtypes.BoolType(True):
            problems.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problems += _cel_problems(sub, value[key], f"{path}.{key}" if path else key, env)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += _cel_problems(schema["items"], item, f"{path}[{i}]", env)
    return problems


def problems(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse `obj` ([] when it would store it)."""
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    out = []
    if obj.get("apiVersion") != f"{crd['spec']['group']}/{version['name']}":
        out.append(f"apiVersion: {obj.get('apiVersion')!r} is not served by {crd['metadata']['name']}")
    if obj.get("kind") != crd["spec"]["names"]["kind"]:
        out.append(f"kind: {obj.get('kind')!r} is not {crd['spec']['names']['kind']!r}")
    validator = jsonschema.Draft7Validator(_strict(copy.deepcopy(schema)), format_checker=jsonschema.FormatChecker())
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in err.absolute_path)
        out.append(f"{where or '<root>'}: {err.message}")
    if not out:  # the API server runs CEL only on objects that pass the schema
        out += _cel_problems(schema, obj, "", celpy.Environment())
    return out
