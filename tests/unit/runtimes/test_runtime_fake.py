"""The fake runtime keeps the same contract as the real engines (tests/runtime_contract.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from substratus.runtimes.base import Mount, RunSpec
from substratus.runtimes.engine import run_argv
from substratus.runtimes.fake import FakeRuntime
from tests.runtime_contract import RuntimeContract


class TestFakeRuntime(RuntimeContract):
    @pytest.fixture
    def runtime(self) -> FakeRuntime:
        rt = FakeRuntime()
        rt.fail_builds.add("localhost/substratus/contract-fail:x")
        rt.prints = lambda spec: ["hello-contract"] if "echo hello-contract" in " ".join(spec.command) else []
        return rt

    @pytest.fixture
    def open_follows(self, runtime: FakeRuntime) -> Callable[[str], int]:
        return lambda name: runtime.followers

    @pytest.fixture
    def image_dir(self, tmp_path: Path) -> Path:
        (tmp_path / "Dockerfile").write_text("FROM scratch\nWORKDIR /model\n")
        return tmp_path


def test_run_argv_publishes_on_loopback_and_mounts_read_only() -> None:
    spec = RunSpec(name="n", image="img", command=["train.sh"], env={"A": "1"},
                   mounts=[Mount("/data", "/data", read_only=True), Mount("/out", "/model/trained")],
                   ports={8080: 4321}, labels={"k": "v"})
    argv = run_argv("podman", spec, detach=True)
    assert argv[:3] == ["podman", "run", "-d"]
    assert "127.0.0.1:4321:8080" in argv
    assert "/data:/data:ro" in argv and "/out:/model/trained" in argv
    assert argv[-2:] == ["img", "train.sh"]
    assert "--privileged" not in argv


@pytest.mark.parametrize("engine,flags", [("docker", ["--gpus", "all"]),
                                          ("podman", ["--device", "nvidia.com/gpu=all"]),
                                          ("/usr/bin/docker", ["--gpus", "all"])])
def test_gpu_flags_per_engine(engine: str, flags: list[str]) -> None:
    argv = run_argv(engine, RunSpec(name="n", image="img", command=["serve.sh"], gpu=True), detach=True)
    i = argv.index(flags[0])
    assert argv[i:i + 2] == flags
    assert "--gpus" not in run_argv(engine, RunSpec(name="n", image="img"), detach=True)


def test_entrypoint_override_is_portable_between_engines() -> None:
    argv = run_argv("docker", RunSpec(name="n", image="img", entrypoint=["sh", "-c"], command=["echo hi"]),
                    detach=False)
    assert argv[argv.index("--entrypoint") + 1] == "sh"
    assert argv[-3:] == ["img", "-c", "echo hi"]
