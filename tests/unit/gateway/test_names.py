"""The naming rule: `name` in default, `namespace/name` elsewhere, `base:adapter` later."""

from __future__ import annotations

import pytest

from substratus.gateway.names import BadModelName, ModelRef, canonical, model_id, parse_model_id


def test_default_namespace_is_the_bare_name() -> None:
    assert model_id("default", "tiny-gpt") == "tiny-gpt"
    assert parse_model_id("tiny-gpt") == ModelRef("default", "tiny-gpt")


def test_other_namespaces_are_prefixed() -> None:
    assert model_id("team-a", "tiny-gpt") == "team-a/tiny-gpt"
    assert parse_model_id("team-a/tiny-gpt") == ModelRef("team-a", "tiny-gpt")


def test_default_prefix_is_accepted_and_dropped() -> None:
    assert canonical("default/tiny-gpt") == "tiny-gpt"


def test_adapters_round_trip() -> None:
    ref = parse_model_id("team-a/tiny-gpt:poems")
    assert ref == ModelRef("team-a", "tiny-gpt", "poems")
    assert ref.id == "team-a/tiny-gpt:poems" and ref.base == "team-a/tiny-gpt"
    assert model_id("default", "tiny-gpt", "poems") == "tiny-gpt:poems"


@pytest.mark.parametrize("text", ["", "Tiny", "a/b/c", "ns/", "/x", "x:", "x:Bad", "-x", "x" * 64, "gpt-4o.mini"])
def test_names_that_cannot_exist_are_refused(text: str) -> None:
    with pytest.raises(BadModelName):
        parse_model_id(text)
