"""Label selectors (`sub get -l`, the API's labelSelector) and label checks in manifests."""

from __future__ import annotations

import pytest

from substratus.errors import ValidationError
from substratus.resources.labels import check_key, check_value
from substratus.resources.manifest import parse_object
from substratus.resources.selectors import Requirement, parse

WEB = {"app": "web", "tier": "frontend", "example.com/team": "ml"}
DB = {"app": "db", "tier": "backend", "legacy": ""}
NONE: dict[str, str] = {}


@pytest.mark.parametrize("text,web,db,none", [
    ("", True, True, True),
    ("app=web", True, False, False),
    ("app==web", True, False, False),
    ("app!=web", False, True, True),             # no label at all also "is not web"
    ("app", True, True, False),
    ("!legacy", True, False, True),
    ("tier in (frontend,backend)", True, True, False),
    ("tier notin (frontend)", False, True, True),
    ("app=web,tier=frontend", True, False, False),
    ("app=web,tier=backend", False, False, False),
    ("example.com/team=ml", True, False, False),
    ("legacy=", False, True, False),             # the empty value is a value
    ("  app = web ,  tier in ( frontend , x ) ", True, False, False),
])
def test_selectors_match_as_in_kubernetes(text: str, web: bool, db: bool, none: bool) -> None:
    sel = parse(text)
    assert (sel.matches(WEB), sel.matches(DB), sel.matches(NONE)) == (web, db, none)


def test_a_selector_prints_back_in_canonical_form() -> None:
    sel = parse(" app = web,!legacy , tier in (a, b,a) ")
    assert str(sel) == "app=web,!legacy,tier in (a,b)"
    assert parse(str(sel)) == sel
    assert sel.requirements[2] == Requirement("tier", "in", ("a", "b"))


@pytest.mark.parametrize("text,message", [
    ("app=web,", "missing after the last ','"),
    ("app=web tier=x", "expected ',' between requirements"),
    ("tier in (a,b", "expected ',' or ')'"),
    ("tier in a", "expected '('"),
    ("tier in ()", "expected a value in the set of 'tier'"),
    ("app=we b", "expected ',' between requirements"),
    ("Bad Key=x", "unexpected 'Key' after key 'Bad'"),
    ("app>1", "'>' after key 'app' is not supported"),
    ("app=x>", "expected ',' between requirements"),
    ("=web", "expected a label key"),
    ("app=" + "v" * 64, "must be empty or at most 63 characters"),
    ("-app=x", "label key '-app'"),
    ("!", "expected a label key, found 'the end'"),
])
def test_bad_selectors_say_what_is_wrong_and_name_the_parameter(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse(text, field="--selector")
    [(field, msg)] = e.value.problems
    assert field == "--selector" and message in msg and repr(text) in msg
    assert "app=web" in e.value.hint, "the hint shows a correct example"


@pytest.mark.parametrize("key", ["app", "a", "app.kubernetes.io/name", "x_y.z-1", "A9"])
def test_good_label_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key,message", [
    ("", "must not be empty"),
    ("/x", "empty prefix"),
    ("Example.com/x", "must be a DNS subdomain"),
    ("a/", "no name after the prefix"),
    ("-a", "starting and ending with a letter or digit"),
    ("a" * 64, "at most 63 characters"),
    ("has space", "letters, digits"),
])
def test_bad_label_keys(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_key(key)


def test_label_values() -> None:
    assert check_value("") == "" and check_value("v1.2_x") == "v1.2_x"
    for bad in ("a b", "-a", "a" * 64, "ü"):
        with pytest.raises(ValueError):
            check_value(bad)


def manifest(labels: object) -> dict[str, object]:
    return {"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": "n", "labels": labels},
            "spec": {"modelName": "m"}}


def test_manifest_labels_are_checked_with_the_field_path() -> None:
    assert parse_object(manifest({"app": "web", "example.com/tier": ""})).metadata.labels["app"] == "web"
    with pytest.raises(ValidationError) as e:
        parse_object(manifest({"Bad Key": "x", "app": "no spaces", "version": 2}))
    fields = dict(e.value.problems)
    assert "label key 'Bad Key'" in fields["metadata.labels.Bad Key"]
    assert "label value 'no spaces'" in fields["metadata.labels.app"]
    assert "must be a string" in fields["metadata.labels.version"]
