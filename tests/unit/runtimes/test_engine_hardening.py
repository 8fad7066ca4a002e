"""Holes 1, 3 and 8 of issue 7 at the argv level: `--` before user data, secrets never on an
argv, every container hardened, spec.resources.limits as --cpus/--memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.errors import EngineError, ValidationError
from substratus.resources.limits import RunLimits, cpu_cores, memory_bytes
from substratus.resources.manifest import parse_object
from substratus.runtimes.base import BuildSpec, RunSpec
from substratus.runtimes.engine import KEPT_CAPABILITIES, build_argv, run_argv, run_env


def test_every_container_runs_hardened_and_never_privileged() -> None:
    argv = run_argv("podman", RunSpec(name="n", image="img", command=["serve.sh"]), detach=True)
    assert argv[argv.index("--security-opt") + 1] == "no-new-privileges"
    assert int(argv[argv.index("--pids-limit") + 1]) > 0
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    added = [argv[i + 1] for i, a in enumerate(argv) if a == "--cap-add"]
    assert added == list(KEPT_CAPABILITIES), "one flag per capability (docker does not split 'A,B')"
    assert not {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "MKNOD", "SYS_PTRACE"} & set(KEPT_CAPABILITIES)
    assert not any(a.startswith("--privileged") or "seccomp=unconfined" in a for a in argv)


def test_the_image_comes_after_double_dash_so_it_is_never_an_option() -> None:
    argv = run_argv("podman", RunSpec(name="n", image="--privileged", command=["x"]), detach=False)
    assert argv[-3:] == ["--", "--privileged", "x"]
    b = build_argv("podman", BuildSpec(context=Path("-ctx"), tag="t"), [])
    assert b[-2:] == ["--", "-ctx"]


def test_a_secret_is_passed_by_name_and_its_value_only_in_the_environment() -> None:
    spec = RunSpec(name="n", image="img", env={"PLAIN": "1"}, secret_env={"JUPYTER_TOKEN": "s3cr3t-value"})
    argv = run_argv("podman", spec, detach=True)
    assert "JUPYTER_TOKEN" in argv and not any("s3cr3t-value" in a for a in argv)
    assert "PLAIN=1" in argv
    env = run_env(spec)
    assert env is not None and env["JUPYTER_TOKEN"] == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(spec)
    with pytest.raises(EngineError):
        run_argv("podman", RunSpec(name="n", image="i", secret_env={"A=B": "x"}), detach=True)


def test_limits_become_engine_flags_and_swap_is_not_extra_memory() -> None:
    spec = RunSpec(name="n", image="img", limits=RunLimits(cpus=0.5, memory=512 * 2**20))
    argv = run_argv("docker", spec, detach=True)
    assert argv[argv.index("--cpus") + 1] == "0.5"
    assert argv[argv.index("--memory") + 1] == f"{512 * 2**20}b"
    assert argv[argv.index("--memory-swap") + 1] == f"{512 * 2**20}b"
    assert "--cpus" not in run_argv("docker", RunSpec(name="n", image="img"), detach=True)


@pytest.mark.parametrize("value,cores", [("500m", 0.5), ("2", 2), (1, 1), (0.25, 0.25), ("1.5", 1.5), ("10m", 0.01)])
def test_cpu_quantities(value: object, cores: float) -> None:
    assert float(cpu_cores(value)) == cores  # type: ignore[arg-type]


@pytest.mark.parametrize("value,size", [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1G", 10**9), ("1e9", 10**9),
                                        (10**8, 10**8), ("64M", 64 * 10**6)])
def test_memory_quantities(value: object, size: int) -> None:
    assert memory_bytes(value) == size  # type: ignore[arg-type]


def server(resources: object, kind: str = "ModelServer") -> dict[str, object]:
    spec: dict[str, object] = {"modelName": "m", "resources": resources}
    return {"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": "s"}, "spec": spec}


@pytest.mark.parametrize("resources,field", [
    ({"limits": {"memory": "4GB"}}, "spec.resources.limits.memory"),
    ({"limits": {"memory": "1Mi"}}, "spec.resources.limits.memory"),
    ({"limits": {"memory": "1.5"}}, "spec.resources.limits.memory"),
    ({"limits": {"cpu": "-1"}}, "spec.resources.limits.cpu"),
    ({"limits": {"cpu": "1m"}}, "spec.resources.limits.cpu"),
    ({"limits": {"cpu": True}}, "spec.resources.limits.cpu"),
    ({"limits": {"cpu": "two"}}, "spec.resources.limits.cpu"),
    ({"limits": {"nvidia.com/gpu": 1}}, "spec.resources.limits.nvidia.com/gpu"),
    ({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}, "spec.resources"),
    ({"limit": {"cpu": "1"}}, "spec.resources.limit"),
])
def test_bad_resources_are_refused_with_the_field_path(resources: object, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_object(server(resources))
    assert e.value.problems[0][0] == field, e.value.problems


@pytest.mark.parametrize("kind,extra", [("Dataset", {"filename": "d.jsonl", "source": {"dir": "/x"}}),
                                        ("Model", {"source": {"dir": "/x"}}), ("ModelServer", {"modelName": "m"}),
                                        ("Notebook", {"modelName": "m"})])
def test_every_kind_carries_resources_to_its_run_limits(kind: str, extra: dict[str, object]) -> None:
    doc = {"apiVersion": "substratus.ai/v1", "kind": kind, "metadata": {"name": "x"},
           "spec": {**extra, "resources": {"limits": {"cpu": "250m", "memory": "1Gi"}, "requests": {"cpu": "100m"}}}}
    obj = parse_object(doc)
    assert obj.spec.run_limits() == RunLimits(cpus=0.25, memory=2**30)
    assert obj.wire()["spec"]["resources"]["limits"] == {"cpu": "250m", "memory": "1Gi"}


def test_a_probe_without_network_gets_none_and_labels_go_into_one_dockerfile_line(tmp_path: Path) -> None:
    from substratus.runtimes.engine import label_instruction, labelled_dockerfile_text

    assert run_argv("podman", RunSpec(name="n", image="i", network=False), detach=False)[-4:-2] == \
        ["--network", "none"]
    assert "--network" not in run_argv("podman", RunSpec(name="n", image="i"), detach=False)
    assert label_instruction({"b": 'say "$HI"\\', "a": "1"}) == 'LABEL "a"="1" "b"="say \\"\\$HI\\"\\\\"'
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY f /f")
    spec = BuildSpec(context=tmp_path, tag="t", labels={"k": "v"})
    assert labelled_dockerfile_text("podman", spec) == 'FROM scratch\nCOPY f /f\nLABEL "k"="v"\n'
    (tmp_path / "Containerfile").write_text("FROM scratch\n")
    assert labelled_dockerfile_text("podman", spec) == 'FROM scratch\nLABEL "k"="v"\n'  # podman prefers it
    assert labelled_dockerfile_text("/usr/bin/docker", spec).startswith("FROM scratch\nCOPY")  # docker does not
    assert labelled_dockerfile_text("podman", BuildSpec(context=tmp_path / "none", tag="t", labels={"k": "v"})) \
        is None  # unreadable: the engine reports it, with --label flags
    assert "--label" not in build_argv("podman", spec, [], labelled=tmp_path / "x")
    (tmp_path / "Containerfile").write_text("# escape=`\nFROM scratch\n")
    assert labelled_dockerfile_text("podman", spec) is None  # another escape character: --label flags
