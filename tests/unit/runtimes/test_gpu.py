"""GPU pass-through at the argv level, per engine, and how each engine's GPU support is detected.

docker: `--gpus all` (the NVIDIA container toolkit registers an `nvidia` runtime).
podman, rootful or rootless: the CDI device `nvidia.com/gpu=all`, from a spec that
`nvidia-ctk cdi generate` writes to /etc/cdi. Nothing privileged either way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from substratus.runtimes import engine
from substratus.runtimes.base import Mount, RunSpec
from substratus.runtimes.engine import EngineRuntime, cdi_has_nvidia, run_argv

SPEC = RunSpec(name="sub-x-server", image="localhost/substratus/model:1", command=["serve.sh"],
               ports={8080: 41000}, mounts=[Mount("/home/u/.substratus/data", "/data", read_only=True)], gpu=True)


def test_docker_gets_gpus_all_before_the_image() -> None:
    argv = run_argv("docker", SPEC, detach=True)
    assert argv[argv.index("--gpus"):argv.index("--gpus") + 2] == ["--gpus", "all"]
    assert argv.index("--gpus") < argv.index("localhost/substratus/model:1")
    assert "--device" not in argv and "--privileged" not in argv


def test_podman_gets_the_cdi_device_before_the_image() -> None:
    argv = run_argv("/usr/bin/podman", SPEC, detach=True)
    i = argv.index("--device")
    assert argv[i:i + 2] == ["--device", "nvidia.com/gpu=all"]
    assert i < argv.index("localhost/substratus/model:1")
    assert "--gpus" not in argv and "--privileged" not in argv


def test_no_gpu_flags_without_a_gpu() -> None:
    for name in ("docker", "podman"):
        argv = run_argv(name, RunSpec(name="n", image="img", command=["serve.sh"]), detach=True)
        assert "--gpus" not in argv and "--device" not in argv


def test_cdi_spec_detection_needs_an_nvidia_spec_not_just_the_folder(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    etc.mkdir()
    assert not cdi_has_nvidia((etc, run))  # the folder alone is no GPU
    (etc / "other-vendor.yaml").write_text("cdiVersion: 0.5.0\n")
    assert not cdi_has_nvidia((etc, run))
    run.mkdir()
    (run / "nvidia.json").write_text("{}")
    assert cdi_has_nvidia((etc, run))


@pytest.mark.parametrize("runtimes,expected", [('{"nvidia":{"path":"nvidia-container-runtime"},"runc":{}}', True),
                                               ('{"runc":{"path":"runc"}}', False)])
def test_docker_has_a_gpu_when_the_nvidia_runtime_is_registered(monkeypatch: pytest.MonkeyPatch, runtimes: str,
                                                                expected: bool) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    rt = EngineRuntime("docker")
    seen: list[list[str]] = []

    def fake_run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, runtimes, "")

    monkeypatch.setattr(rt, "_run", fake_run)
    assert rt.gpu_available() is expected
    assert seen == [["info", "--format", "{{json .Runtimes}}"]]


def test_podman_has_a_gpu_when_a_cdi_spec_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(engine, "CDI_SPEC_DIRS", (tmp_path,))
    rt = EngineRuntime("podman")
    assert rt.gpu_available() is False
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n")
    assert rt.gpu_available() is True


def test_no_nvidia_smi_means_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)
    assert EngineRuntime("docker").gpu_available() is False and EngineRuntime("podman").gpu_available() is False
