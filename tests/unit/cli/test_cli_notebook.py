"""`sub notebook`: what DIR is, what gets applied; the sync itself is in test_cli_sync_*.py."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from substratus.cli.notebook import Target, contract_kind, dockerfile_workdir, manifests, name_for
from substratus.errors import ValidationError
from substratus.resources.manifest import parse_object


@pytest.mark.parametrize("text,expected", [
    ("FROM x\nWORKDIR /model\n", "/model"),
    ("FROM x\nworkdir /dataset/\nRUN x\n", "/dataset"),
    ("FROM x\nWORKDIR /build\nRUN make\nWORKDIR /model\n", "/model"),
    ('FROM x\nWORKDIR "/model"\n', "/model"),
    ("FROM x\nRUN echo WORKDIR /model\n", None),
    ("FROM x\n", None),
])
def test_the_last_workdir_of_the_dockerfile_decides(text: str, expected: str | None) -> None:
    assert dockerfile_workdir(text) == expected


def test_contract_kind_tells_model_from_dataset_and_explains_anything_else(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nWORKDIR /dataset\n")
    assert contract_kind(tmp_path) == ("Dataset", "/dataset")
    (tmp_path / "Dockerfile").write_text("FROM scratch\nWORKDIR /app\n")
    with pytest.raises(ValidationError) as e:
        contract_kind(tmp_path)
    assert "WORKDIR is /app" in str(e.value) and "WORKDIR /model" in e.value.hint
    (tmp_path / "Dockerfile").unlink()
    with pytest.raises(ValidationError, match="has no Dockerfile"):
        contract_kind(tmp_path)


def test_names_come_from_the_directory(tmp_path: Path) -> None:
    d = tmp_path / "My Model_v2"
    d.mkdir()
    assert name_for(d) == "my-model-v2"
    assert len(name_for(tmp_path / ("x" * 80))) == 63
    with pytest.raises(click.UsageError, match="--name"):
        name_for(tmp_path / "___")


def test_the_applied_manifests_validate_and_point_at_dir(tmp_path: Path) -> None:
    model, nb = manifests(Target("Model", "default", "bigram", "/model"), tmp_path, "data.jsonl")
    m, n = parse_object(model), parse_object(nb)
    assert m.spec.source.dir == str(tmp_path.resolve()) and m.metadata.labels == {"substratus.ai/notebook": "bigram"}
    assert n.spec.model_name == "bigram" and n.spec.suspend is False
    ds, nb2 = manifests(Target("Dataset", "team", "sonnets", "/dataset"), tmp_path, "s.jsonl", suspend=True)
    d = parse_object(ds)
    assert d.spec.filename == "s.jsonl" and d.metadata.namespace == "team"
    assert parse_object(nb2).spec.dataset_name == "sonnets" and parse_object(nb2).spec.suspend is True
