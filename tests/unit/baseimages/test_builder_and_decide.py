"""`sub images build`: its decisions, its build contexts, and the builder against a fake engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

from substratus import bundle
from substratus.baseimages import context
from substratus.baseimages.builder import Builder, explain_build_failure, ml_hash
from substratus.baseimages.decide import (
    HASH_LABEL,
    Keep,
    MlBaseStep,
    Observed,
    PythonBaseStep,
    Settings,
    legacy_builder_refusal,
    pick_torch_wheel,
    plan_ml_base,
    plan_python_base,
    torch_note,
)
from substratus.cli.images_cmd import Flags, settings_from
from substratus.errors import BuildError, EngineError
from substratus.runtimes.base import BuildSpec, ImageInfo, LogSink
from substratus.runtimes.fake import FakeRuntime

WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def observed(**kw: object) -> Observed:
    base: dict[str, object] = dict(python_base_present=False, rootfs_present=False, ml_base_hash=None,
                                   is_root=True, torch_wheel=None)
    return Observed(**{**base, **kw})  # type: ignore[arg-type]


# -- plan ------------------------------------------------------------------------------------
def test_an_existing_python_base_is_kept_unless_rebuilding() -> None:
    assert isinstance(plan_python_base(Settings(), observed(python_base_present=True)), Keep)
    step = plan_python_base(Settings(rebuild=True), observed(python_base_present=True, rootfs_present=True))
    assert step == PythonBaseStep(try_pull=True, debootstrap=True)


def test_a_missing_python_base_reuses_the_rootfs_image_and_may_skip_the_pull() -> None:
    assert plan_python_base(Settings(), observed(rootfs_present=True)) == PythonBaseStep(True, False)
    assert plan_python_base(Settings(pull_timeout=0), observed()) == PythonBaseStep(False, True)


def test_ml_base_is_rebuilt_exactly_when_its_hash_changes(tmp_path: Path) -> None:
    wheel = tmp_path / WHEEL
    assert isinstance(plan_ml_base(Settings(), observed(ml_base_hash="abc"), "abc"), Keep)
    assert plan_ml_base(Settings(), observed(ml_base_hash="abc", torch_wheel=wheel), "def") == \
        MlBaseStep(torch_wheel=wheel, source_hash="def")
    assert isinstance(plan_ml_base(Settings(rebuild=True), observed(ml_base_hash="abc"), "abc"), MlBaseStep)


def test_torch_comes_from_a_cpu_wheel_for_python_3_11_or_is_announced_as_a_download(tmp_path: Path) -> None:
    names = ["torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # PyPI's CUDA build: never
             "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl",  # other Python
             "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", WHEEL]
    assert pick_torch_wheel([tmp_path / n for n in names], "2.13.0") == tmp_path / WHEEL
    assert pick_torch_wheel([tmp_path / n for n in names[:3]], "2.13.0") is None
    note = torch_note(Settings(wheel_dirs=(tmp_path,)), None)
    assert "downloads torch==2.13.0+cpu" in note and str(tmp_path) in note and "SUBSTRATUS_WHEELS_DIR" in note
    assert WHEEL in torch_note(Settings(), tmp_path / WHEEL)


# -- settings: flags > environment > defaults ------------------------------------------------
def test_settings_take_flags_over_environment_over_defaults(tmp_path: Path) -> None:
    env = {"SUBSTRATUS_WHEELS_DIR": "/env/wheels", "SUBSTRATUS_PULL_TIMEOUT": "7", "SUBSTRATUS_CA_BUNDLE": ""}
    s = settings_from(Flags(), env)
    assert s.wheel_dirs == (Path("/env/wheels"),) and s.pull_timeout == 7 and s.ca_bundle is None
    s = settings_from(Flags(wheels=tmp_path, pull_timeout=0, ca_bundle=tmp_path / "ca.crt"), env)
    assert s.wheel_dirs == (tmp_path,) and s.pull_timeout == 0 and s.ca_bundle == tmp_path / "ca.crt"
    assert settings_from(Flags(no_ca_bundle=True), {}).ca_bundle is None


def test_wheel_folders_default_to_pips_local_find_links_then_opt_wheels() -> None:
    env = {"PIP_FIND_LINKS": "/a file:///b https://example.invalid/wheels"}
    assert context.default_wheel_dirs(env) == (Path("/a"), Path("/b"), Path("/opt/wheels"))
    assert context.default_wheel_dirs({}) == (Path("/opt/wheels"),)


def test_find_torch_wheel_takes_the_first_folder_that_has_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / WHEEL).write_bytes(b"x")
    assert context.find_torch_wheel((tmp_path / "missing", first, second), "2.13.0") == second / WHEEL


# -- build contexts --------------------------------------------------------------------------
def test_ml_base_context_carries_the_ca_bundle_and_links_the_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / WHEEL
    wheel.write_bytes(b"wheel bytes")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ctx = context.ml_base_context(tmp_path / "work", ca, wheel)
    assert (ctx / "Dockerfile").is_file() and (ctx / "substratus_ml" / "__init__.py").is_file()
    assert not (ctx / "tests").exists()
    assert (ctx / "build-extra" / "ca-bundle.crt").read_text() == ca.read_text()
    assert os.stat(ctx / "build-extra" / WHEEL).st_ino == wheel.stat().st_ino  # a hard link, not a copy
    bare = context.ml_base_context(tmp_path / "bare", None, None)
    assert (bare / "build-extra" / "ca-bundle.crt").read_bytes() == b""
    assert [p.name for p in (bare / "build-extra").iterdir()] == ["ca-bundle.crt"]


def test_ml_base_dockerfile_mounts_the_wheel_and_keeps_build_extra_out_of_the_image() -> None:
    text = (bundle.path("images/ml") / "Dockerfile").read_text()
    assert "--mount=type=bind,source=build-extra" in text
    assert 'pip install "/build-extra/$TORCH_WHEEL"' in text
    assert "COPY . " not in text  # would copy build-extra/ (the 190 MB wheel) into a layer
    assert "+cpu" in text and "torch.version.cuda is None" in text


def test_python_base_context_has_the_ca_bundle_in_the_context(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("certs")
    ctx = context.python_base_context(tmp_path / "work", ca)
    assert (ctx / "host-ca-bundle.crt").read_text() == "certs"
    assert "COPY host-ca-bundle.crt /tmp/host-ca-bundle.crt" in (ctx / "Dockerfile").read_text()


# -- the builder against a fake engine -------------------------------------------------------
class FakeImageEngine(FakeRuntime):
    def __init__(self, pullable: bool = False) -> None:
        super().__init__()
        self.pullable = pullable
        self.specs: list[BuildSpec] = []
        self.components: list[str] = []

    def build(self, spec: BuildSpec, log: LogSink) -> None:
        self.specs.append(spec)
        super().build(spec, log)
        info = self.image_store[spec.tag]
        self.image_store[spec.tag] = ImageInfo(**{**info.__dict__, "labels": dict(spec.labels)})

    def pull(self, ref: str, timeout: float) -> bool:
        self.calls.append(("pull", ref))
        if self.pullable:
            self.image_store[ref] = ImageInfo(ref=ref, id=f"id-{ref}", workdir="", env={}, labels={}, entrypoint=[],
                                         cmd=[])
        return self.pullable

    def tag(self, source: str, target: str) -> None:
        self.calls.append(("tag", target))
        self.image_store[target] = self.image_store[source]

    def server_components(self) -> list[str]:
        return list(self.components)

    def import_rootfs(self, rootfs: Path, ref: str, changes: list[str]) -> None:
        self.calls.append(("import", ref))
        self.image_store[ref] = ImageInfo(ref=ref, id="id-rootfs", workdir="", env={}, labels={}, entrypoint=[], cmd=[])


def builder(engine: FakeImageEngine, *, is_root: bool = True, wheel_dir: Optional[Path] = None,
            **kw: object) -> Builder:
    settings = Settings(wheel_dirs=(wheel_dir,) if wheel_dir else (), ca_bundle=None, **kw)  # type: ignore[arg-type]
    return Builder(engine, settings, log=lambda _: None, is_root=is_root)


def test_a_pullable_python_image_is_pulled_and_tagged_and_ml_base_built_on_it(tmp_path: Path) -> None:
    (tmp_path / WHEEL).write_bytes(b"w")
    engine = FakeImageEngine(pullable=True)
    outcomes = builder(engine, wheel_dir=tmp_path).run()
    assert [(o.image, o.result) for o in outcomes] == [("localhost/substratus/python-base:bookworm", "pulled"),
                                                       ("localhost/substratus/ml-base:0.1", "built")]
    ml_spec = engine.specs[-1]
    assert ml_spec.build_args["PYTHON_IMAGE"] == "localhost/substratus/python-base:bookworm"
    assert ml_spec.build_args["TORCH_WHEEL"] == WHEEL
    assert (ml_spec.context / "build-extra").name == "build-extra"


def test_a_second_run_changes_nothing_and_a_new_python_base_rebuilds_ml_base(tmp_path: Path) -> None:
    engine = FakeImageEngine(pullable=True)
    builder(engine).run()
    assert [o.result for o in builder(engine).run()] == ["unchanged", "unchanged"]
    engine.image_store["localhost/substratus/python-base:bookworm"] = ImageInfo(
        ref="x", id="a-new-id", workdir="", env={}, labels={}, entrypoint=[], cmd=[])
    assert [o.result for o in builder(engine).run()] == ["unchanged", "built"]
    label = engine.image_store["localhost/substratus/ml-base:0.1"].labels[HASH_LABEL]
    assert label == ml_hash(bundle.path("images/ml"), "a-new-id")


def test_without_a_registry_python_base_is_built_from_the_rootfs_image(tmp_path: Path) -> None:
    engine = FakeImageEngine()
    engine.image_store["localhost/substratus/debian-rootfs:bookworm"] = ImageInfo(
        ref="r", id="id-rootfs", workdir="", env={}, labels={}, entrypoint=[], cmd=[])
    outcomes = builder(engine, only="python-base").run()
    assert outcomes[0].result == "built"
    spec = engine.specs[0]
    assert spec.build_args == {"ROOTFS_IMAGE": "localhost/substratus/debian-rootfs:bookworm"}
    assert ("import", "localhost/substratus/debian-rootfs:bookworm") not in engine.calls


def test_a_rootless_user_without_a_registry_is_told_how_to_get_python_base() -> None:
    with pytest.raises(EngineError) as err:
        builder(FakeImageEngine(), is_root=False).run()
    assert "debootstrap needs root" in err.value.message
    assert "save localhost/substratus/python-base:bookworm" in err.value.hint and "load" in err.value.hint


def test_ml_base_alone_needs_python_base() -> None:
    with pytest.raises(EngineError, match="does not exist"):
        builder(FakeImageEngine(), only="ml-base").run()


def test_a_legacy_docker_builder_gets_a_clear_error_naming_buildkit() -> None:
    err = BuildError("image build failed (exit 1)",
                     log_tail="Step 7/15 : RUN --mount=type=bind,source=build-extra,target=/build-extra ...\n"
                              "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/")
    explained = explain_build_failure(err, "localhost/substratus/ml-base:0.1", "docker")
    assert "RUN --mount" in explained.message and "DOCKER_BUILDKIT" in explained.hint
    other = explain_build_failure(BuildError("failed", log_tail="E: Unable to locate package"), "img", "podman")
    assert "Unable to locate package" in other.message


@pytest.mark.parametrize("engine,buildkit,components,refused", [
    ("docker", "0", ["Engine", "containerd"], True),         # Docker's legacy builder: no RUN --mount
    ("/usr/bin/docker", "false", ["Engine"], True),
    ("docker", "0", ["Podman Engine", "Conmon"], False),      # podman's API builds with buildah
    ("docker", None, ["Engine"], False),                      # BuildKit, Docker 23+'s default
    ("docker", "1", ["Engine"], False),
    ("podman", "0", [], False),
])
def test_docker_legacy_builder_is_refused_before_building_ml_base(engine: str, buildkit: Optional[str],
                                                                   components: list[str], refused: bool) -> None:
    assert (legacy_builder_refusal(engine, buildkit, components) is not None) is refused


def test_the_builder_stops_before_ml_base_on_a_legacy_docker_builder() -> None:
    engine = FakeImageEngine(pullable=True)
    engine.engine = "docker"  # type: ignore[misc]
    engine.components = ["Engine"]
    with pytest.raises(EngineError, match="legacy builder") as err:
        builder(engine, docker_buildkit="0").run()
    assert "unset DOCKER_BUILDKIT" in err.value.hint
    assert [s.tag for s in engine.specs] == []  # python-base was pulled; nothing half-built
