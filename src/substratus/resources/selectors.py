"""Label selectors as kubectl writes them: `app=web,tier!=db,env in (a,b),!legacy`.

`parse` turns the text into a `Selector` of requirements (all must hold) and
`Selector.matches` tests a label map. The forms are those of Kubernetes'
equality- and set-based selectors:

    key            the label is set            !key          it is not set
    key=value      set and equal (also ==)     key!=value    not set, or different
    key in (a,b)   set to one of the values    key notin (a,b)  not set, or none of them

Pure functions, no pydantic: the CLI checks `-l` before it contacts the
control plane, and the API filters lists, watches and batch deletes with the
same code. Errors name the parameter (`--selector` or `labelSelector`) and
show a correct example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from substratus.errors import ValidationError
from substratus.resources.labels import check_key, check_value

Op = Literal["exists", "!exists", "=", "!=", "in", "notin"]
EXAMPLE = "e.g. 'app=web', 'tier!=db', 'env in (dev,test)', 'env notin (prod)', 'gpu', '!legacy'"
_TOKEN = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,|<|>)|([^\s,()=!<>]+))")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has, value = self.key in labels, labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op == "=":
            return has and value == self.values[0]
        if self.op == "!=":
            return not has or value != self.values[0]
        if self.op == "in":
            return has and value in self.values
        return not has or value not in self.values  # notin

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!exists":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        """An empty selector selects everything."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Parser:
    """A recursive-descent parser over (kind, text) tokens; kind is the operator or 'word'."""

    def __init__(self, text: str, field: str) -> None:
        self.text, self.field = text, field
        self.tokens = self._lex(text)
        self.pos = 0

    def fail(self, message: str) -> ValidationError:
        return ValidationError([(self.field, f"{message} in selector {self.text!r}")], hint=EXAMPLE)

    def _lex(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            assert m is not None  # an operator or a run of other non-space characters always matches
            tokens.append((m.group(1), m.group(1)) if m.group(1) else ("word", m.group(2)))
            pos = m.end()
        return tokens

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.pos += 1
        return tok

    def selector(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek()[0] == "end":
            return Selector()
        while True:
            reqs.append(self.requirement())
            kind, text = self.take()
            if kind == "end":
                return Selector(tuple(reqs))
            if kind != ",":
                raise self.fail(f"expected ',' between requirements, found {text!r}")
            if self.peek()[0] == "end":
                raise self.fail("a requirement is missing after the last ','")

    def key(self) -> str:
        kind, text = self.take()
        if kind != "word":
            raise self.fail(f"expected a label key, found {text or 'the end'!r}")
        try:
            return check_key(text)
        except ValueError as err:
            raise self.fail(str(err)) from None

    def value(self, key: str) -> str:
        kind, text = self.peek()
        if kind != "word":
            return ""  # `key=` selects the empty value, as in Kubernetes
        self.take()
        try:
            return check_value(text, key)
        except ValueError as err:
            raise self.fail(str(err)) from None

    def requirement(self) -> Requirement:
        if self.peek()[0] == "!":
            self.take()
            return Requirement(self.key(), "!exists")
        key = self.key()
        kind, text = self.peek()
        if kind in ("end", ","):
            return Requirement(key, "exists")
        self.take()
        if kind in ("=", "=="):
            return Requirement(key, "=", (self.value(key),))
        if kind == "!=":
            return Requirement(key, "!=", (self.value(key),))
        if kind in ("<", ">"):
            raise self.fail(f"{kind!r} after key {key!r} is not supported: use =, !=, 'in (...)' or 'notin (...)'")
        if kind == "word" and text in ("in", "notin"):
            op: Op = "in" if text == "in" else "notin"
            return Requirement(key, op, self.value_set(key))
        raise self.fail(f"unexpected {text!r} after key {key!r}: expected =, ==, !=, 'in (...)' or 'notin (...)'")

    def value_set(self, key: str) -> tuple[str, ...]:
        if self.take()[0] != "(":
            raise self.fail(f"expected '(' after 'in' or 'notin' for key {key!r}")
        values: list[str] = []
        while True:
            kind, text = self.peek()
            if kind != "word":
                raise self.fail(f"expected a value in the set of {key!r}, found {text or 'the end'!r}")
            values.append(self.value(key))
            kind, text = self.take()
            if kind == ")":
                return tuple(dict.fromkeys(values))
            if kind != ",":
                raise self.fail(f"expected ',' or ')' in the set of {key!r}, found {text or 'the end'!r}")


def parse(text: str, *, field: str = "labelSelector") -> Selector:
    """Parse a selector; raises ValidationError naming `field` and what is wrong where."""
    return _Parser(text or "", field).selector()
