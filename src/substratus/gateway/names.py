"""The one rule that turns a served model into the name clients send, and back.

A ModelServer `metadata.name` in the `default` namespace is called by its name
alone (`tiny-gpt`); in any other namespace by `namespace/name` (`team-a/tiny-gpt`).
An adapter served on top of a base model will be `base:adapter`
(`team-a/tiny-gpt:poems`). `default/tiny-gpt` is accepted and means `tiny-gpt`.

Everything in the gateway that names a model (routing, `/v1/models`, load
reports, the Backends calls) goes through `model_id` and `parse_model_id`, so
the rule lives here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from substratus.resources.schema import DNS1123_LABEL

DEFAULT_NAMESPACE = "default"
NAMESPACE_SEPARATOR = "/"
ADAPTER_SEPARATOR = ":"
MAX_LABEL = 63


class BadModelName(ValueError):
    """The text cannot be a model name under the rule above (the message says which part)."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name: the ModelServer's namespace and name, and an optional adapter."""

    namespace: str
    name: str
    adapter: Optional[str] = None

    @property
    def id(self) -> str:
        return model_id(self.namespace, self.name, self.adapter)

    @property
    def base(self) -> str:
        """The id of the server an adapter runs on (the model itself when it is no adapter)."""
        return model_id(self.namespace, self.name)


def model_id(namespace: str, name: str, adapter: Optional[str] = None) -> str:
    """The name clients send for a ModelServer (and, later, one of its adapters)."""
    base = name if namespace == DEFAULT_NAMESPACE else f"{namespace}{NAMESPACE_SEPARATOR}{name}"
    return f"{base}{ADAPTER_SEPARATOR}{adapter}" if adapter else base


def parse_model_id(text: str) -> ModelRef:
    """`name`, `namespace/name`, optionally `...:adapter`; raises BadModelName."""
    base, sep, adapter = text.partition(ADAPTER_SEPARATOR)
    if sep and not adapter:
        raise BadModelName(f"{text!r}: nothing after {ADAPTER_SEPARATOR!r}")
    namespace, sep, name = base.rpartition(NAMESPACE_SEPARATOR)
    if not sep:
        namespace = DEFAULT_NAMESPACE
    for what, label in (("namespace", namespace), ("name", name), ("adapter", adapter)):
        if (what != "adapter" or adapter) and not _is_label(label):
            raise BadModelName(f"{text!r}: the {what} {label!r} is not a DNS-1123 label "
                               "(lower-case letters, digits and '-', at most 63)")
    return ModelRef(namespace, name, adapter or None)


def canonical(text: str) -> str:
    """The canonical id for what a client sent (`default/x` -> `x`); raises BadModelName."""
    return parse_model_id(text).id


def _is_label(text: str) -> bool:
    return 0 < len(text) <= MAX_LABEL and DNS1123_LABEL.match(text) is not None
