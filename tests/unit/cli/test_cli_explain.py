"""`sub explain`: field facts read from the same schemas that validate manifests."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from substratus.cli.explain import complete_path, explain, resolve, type_info
from substratus.errors import ValidationError
from substratus.resources.schema import Compute, ModelSpec, TrainingParams


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(explain, list(args))
    return r.exit_code, r.output


def test_a_field_shows_type_default_bounds_and_description() -> None:
    code, text = run("model.spec.training.params.batchSize")
    assert code == 0
    assert "KIND:     Model" in text and "FIELD:    batchSize <integer>" in text
    assert "PATH:     spec.training.params.batchSize" in text
    assert "DEFAULT:  1" in text and "MINIMUM:  1" in text
    assert TrainingParams.model_fields["batch_size"].description in text


def test_allowed_values_come_from_the_literal_type() -> None:
    code, text = run("model.spec.compute.types")
    assert code == 0 and "<[]string>" in text and "ALLOWED:  CPU, GPU" in text and 'DEFAULT:  ["CPU"]' in text


def test_a_kind_lists_its_fields_and_aliases_work() -> None:
    code, text = run("servers")
    assert code == 0 and "KIND:     ModelServer" in text
    assert "metadata  <Object> -required-" in text and "spec  <Object> -required-" in text


def test_required_fields_say_so_and_recursive_shows_the_tree() -> None:
    code, text = run("dataset.spec", "--recursive")
    assert code == 0 and "REQUIRED: yes" in text
    assert "    filename  <string> -required-" in text
    assert "        git  <Object>" in text and "            url  <string> -required-" in text


def test_snake_case_names_are_accepted_too() -> None:
    assert resolve("model.spec.training.params.batch_size").path == ["spec", "training", "params", "batchSize"]


def test_an_unknown_field_is_an_error_naming_what_exists() -> None:
    with pytest.raises(ValidationError) as e:
        resolve("model.spec.replicas")
    [(field, msg)] = e.value.problems
    assert field == "spec.replicas" and "source, training, size, compute" in msg
    assert "sub explain model.spec" in e.value.hint
    with pytest.raises(ValidationError, match="unknown kind"):
        resolve("pipeline")


def test_every_spec_field_has_a_description() -> None:
    """What `sub explain` prints is only as good as the schema's descriptions: none may be missing."""
    from substratus.resources.schema import KINDS

    def walk(model: type, where: str) -> list[str]:
        missing = []
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            if not info.description:
                missing.append(f"{where}.{name}")
            nested = type_info(info.annotation).model
            if nested is not None:
                missing += walk(nested, f"{where}.{name}")
        return missing

    for kind, cls in KINDS.items():
        assert walk(cls.model_fields["spec"].annotation, kind) == []
    assert ModelSpec.model_fields["compute"].description and Compute.__doc__


def test_completion_of_kinds_and_paths() -> None:
    assert complete_path(None, None, "mo") == ["model", "modelserver"]  # type: ignore[arg-type]
    assert complete_path(None, None, "model.spec.tr") == ["model.spec.training"]  # type: ignore[arg-type]
    assert complete_path(None, None, "model.nope.x") == []  # type: ignore[arg-type]
