"""Label keys and values, checked as Kubernetes checks them.

Objects carry `metadata.labels`; `sub get -l` and the API's `labelSelector`
select on them. The same two checks serve the schema (which names the field
path, `metadata.labels.<key>`) and the selector parser (which names the
selector): a label that could not be selected should not be storable, and a
selector naming such a label is a typo worth reporting. No pydantic here: the
CLI parses selectors without paying for it.
"""

from __future__ import annotations

import re

NAME_MAX = 63
PREFIX_MAX = 253
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_RULE = ("at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or "
              "digit")


def check_key(key: str) -> str:
    """`app`, `example.com/tier`; raises ValueError saying which part is wrong and what is allowed."""
    if not isinstance(key, str) or not key:
        raise ValueError("label key must not be empty")
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix:
            raise ValueError(f"label key {key!r} has an empty prefix before '/': write 'example.com/{name}' or "
                             f"just {name!r}")
        if len(prefix) > PREFIX_MAX or not _DNS1123_SUBDOMAIN.match(prefix):
            raise ValueError(f"label key {key!r}: prefix {prefix!r} must be a DNS subdomain (lower-case letters, "
                             "digits, '-' and '.', at most 253 characters), e.g. 'example.com'")
    if not name:
        raise ValueError(f"label key {key!r} has no name after the prefix")
    if len(name) > NAME_MAX or not _NAME.match(name):
        raise ValueError(f"label key {key!r}: name {name!r} must be {_NAME_RULE}")
    return key


def check_value(value: str, key: str = "") -> str:
    """'' or a name-like value (`v1`, `my_model.2`); raises ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"label value must be a string (quote it in YAML: \"{value}\")")
    if value and (len(value) > NAME_MAX or not _NAME.match(value)):
        owner = f" of {key!r}" if key else ""
        raise ValueError(f"label value {value!r}{owner} must be empty or {_NAME_RULE}")
    return value
