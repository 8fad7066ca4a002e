"""Manifests in, validated objects out; bad input names the field and stores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.errors import ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.manifest import load_path, parse_object

API = "substratus.ai/v1"


def model(**spec: object) -> dict[str, object]:
    return {"apiVersion": API, "kind": "Model", "metadata": {"name": "m"}, "spec": spec}


def problems(doc: object) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as e:
        parse_object(doc)
    return e.value.problems


def test_defaults_are_filled_in() -> None:
    obj = parse_object(model(source={"modelName": "base"}, training={"datasetName": "d"}))
    assert obj.spec.training.params.epochs == 3
    assert obj.spec.training.params.batch_size == 1
    assert obj.spec.training.params.data_limit == 1_000_000_000_000
    assert obj.spec.compute.types == ["CPU"]
    assert obj.metadata.namespace == "default"


def test_bad_param_names_its_path() -> None:
    [(path, msg)] = problems(model(source={"modelName": "b"}, training={"datasetName": "d", "params": {"batchSize": 0}}))
    assert path == "spec.training.params.batchSize"
    assert ">= 1" in msg or "greater than or equal to 1" in msg


def test_unknown_field_is_an_error() -> None:
    [(path, msg)] = problems(model(source={"modelName": "b"}, trainng={}))
    assert path == "spec.trainng" and "unknown field" in msg


@pytest.mark.parametrize("filename", ["a/b.jsonl", "../x", "..", "", " x"])
def test_dataset_filename_must_be_plain(filename: str) -> None:
    doc = {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "d"},
           "spec": {"filename": filename, "source": {"dir": "/tmp"}}}
    assert [p for p, _ in problems(doc)] == ["spec.filename"]


@pytest.mark.parametrize("name", ["My_Model", "-x", "a" * 64, "x.y"])
def test_names_must_be_dns_labels(name: str) -> None:
    doc = model(source={"modelName": "b"})
    doc["metadata"] = {"name": name}
    [(path, msg)] = problems(doc)
    assert path == "metadata.name"


def test_missing_required_field() -> None:
    doc = {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "d"}, "spec": {"source": {"dir": "/x"}}}
    assert problems(doc) == [("spec.filename", "required field is missing")]


def test_source_needs_exactly_one_kind() -> None:
    [(path, msg)] = problems(model(source={"modelName": "b", "dir": "/x"}))
    assert path == "spec.source" and "exactly one" in msg


def test_unknown_kind_and_wrong_api_version() -> None:
    paths = [p for p, _ in problems({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}})]
    assert paths == ["apiVersion", "kind"]


def test_server_alias_and_plural_kinds() -> None:
    obj = parse_object({"apiVersion": API, "kind": "Server", "metadata": {"name": "s"}, "spec": {"modelName": "m"}})
    assert obj.kind == "ModelServer"
    assert canonical_kind("servers") == "ModelServer"
    assert canonical_kind("Notebooks") == "Notebook"
    with pytest.raises(ValidationError):
        canonical_kind("pods")


def test_git_path_cannot_escape_the_repository() -> None:
    [(path, _)] = problems(model(source={"git": {"url": "file:///x", "path": "a/../../b"}}))
    assert path == "spec.source.git.path"


def test_load_path_resolves_dirs_against_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.yaml").write_text(
        "apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: a}\nspec: {source: {dir: ../img}}\n---\n"
        "apiVersion: substratus.ai/v1\nkind: Server\nmetadata: {name: a}\nspec: {modelName: a}\n")
    objs = load_path(tmp_path / "sub")
    assert objs[0].spec.source.dir == str((tmp_path / "img").resolve())
    assert [o.kind for o in objs] == ["Model", "ModelServer"]


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: a\n")
    with pytest.raises(ValidationError) as e:
        load_path(f)
    assert "malformed YAML" in str(e.value) and "line" in str(e.value)


def test_all_problems_of_all_documents_are_reported_at_once(tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text("apiVersion: substratus.ai/v1\nkind: Model\nmetadata: {name: A}\nspec: {source: {modelName: b}}\n"
                 "---\napiVersion: substratus.ai/v1\nkind: Dataset\nmetadata: {name: d}\nspec: {filename: x/y, "
                 "source: {dir: .}}\n")
    with pytest.raises(ValidationError) as e:
        load_path(f)
    text = str(e.value)
    assert "(document 1): metadata.name" in text and "(document 2): spec.filename" in text


def test_duplicates_in_one_apply_are_refused(tmp_path: Path) -> None:
    doc = "apiVersion: substratus.ai/v1\nkind: Server\nmetadata: {name: a}\nspec: {modelName: a}\n"
    (tmp_path / "x.yaml").write_text(doc + "---\n" + doc)
    with pytest.raises(ValidationError, match="more than once"):
        load_path(tmp_path / "x.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        load_path(tmp_path / "nope.yaml")


def test_a_clients_list_names_every_problem_and_every_object_given_twice() -> None:
    from substratus.resources.manifest import parse_objects

    nb = {"apiVersion": "substratus.ai/v1", "kind": "Notebook", "metadata": {"name": "nb"},
          "spec": {"modelName": "m"}}
    assert [o.name for o in parse_objects([nb])] == ["nb"]
    with pytest.raises(ValidationError) as caught:
        parse_objects([nb, {"apiVersion": "substratus.ai/v1", "kind": "Nope"}, dict(nb), "text"])
    fields = [f for f, _ in caught.value.problems]
    assert fields == ["objects[1]: kind", "objects[2]", "objects[3]"], caught.value.problems
    assert "defined more than once (also objects[0])" in caught.value.problems[1][1]
    assert caught.value.hint == "nothing was applied"


def server(**spec: object) -> dict[str, object]:
    return {"apiVersion": "substratus.ai/v1", "kind": "ModelServer", "metadata": {"name": "s"},
            "spec": {"modelName": "m", **spec}}


@pytest.mark.parametrize("address", ["::1", "::", "fe80::1", "2001:db8::7"])
def test_an_ipv6_server_address_is_refused_naming_the_field(address: str) -> None:
    """Issue 25 item 6: `::1` passed and the server then failed with "invalid port format"."""
    [(path, message)] = problems(server(address=address))
    assert path == "spec.address" and "IPv6" in message and "127.0.0.1" in message


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "192.168.1.7"])
def test_ipv4_server_addresses_pass(address: str) -> None:
    assert parse_object(server(address=address)).spec.address == address  # type: ignore[attr-defined]
