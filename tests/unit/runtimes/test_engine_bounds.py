"""Issue 25 items 7 and 8: what every container gets by default (runtimes.engine.run_argv)."""

from __future__ import annotations

from pathlib import Path

from substratus import contract
from substratus.resources.limits import RunLimits
from substratus.runtimes.base import RunSpec
from substratus.runtimes.engine import default_memory_limit, run_argv


def flag(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def test_output_is_capped_on_both_engines() -> None:
    podman = run_argv("podman", RunSpec(name="x", image="i"), detach=True)
    docker = run_argv("docker", RunSpec(name="x", image="i"), detach=True)
    assert flag(podman, "--log-driver") == ["k8s-file"] and flag(podman, "--log-opt") == ["max-size=16m"]
    assert flag(docker, "--log-driver") == ["json-file"] and "max-size=16m" in flag(docker, "--log-opt")


def test_memory_is_bounded_by_default_and_the_spec_wins() -> None:
    argv = run_argv("podman", RunSpec(name="x", image="i"), detach=True, default_memory=3 * 2**30)
    assert flag(argv, "--memory") == [f"{3 * 2**30}b"] and flag(argv, "--memory-swap") == [f"{3 * 2**30}b"]
    argv = run_argv("podman", RunSpec(name="x", image="i", limits=RunLimits(memory=2**30)), detach=True,
                    default_memory=3 * 2**30)
    assert flag(argv, "--memory") == [f"{2**30}b"]
    assert flag(run_argv("podman", RunSpec(name="x", image="i"), detach=True), "--memory") == []


def test_the_default_is_three_quarters_of_the_machine(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:       25165824 kB\nMemFree: 1 kB\n")
    assert default_memory_limit(tmp_path / "meminfo") == 18 * 2**30
    assert default_memory_limit(tmp_path / "absent") is None


def test_a_container_with_a_network_gets_its_own_stack_and_a_trainer_none() -> None:
    served = run_argv("podman", RunSpec(name="x", image="i", ports={8080: 4000}), detach=True,
                      own_network="slirp4netns")
    trainer = run_argv("podman", RunSpec(name="x", image="i", network=contract.TRAIN_NETWORK), detach=True,
                       own_network="slirp4netns")
    assert flag(served, "--network") == ["slirp4netns"] and flag(trainer, "--network") == ["none"]
    assert flag(run_argv("docker", RunSpec(name="x", image="i"), detach=True), "--network") == []
    assert contract.LOAD_NETWORK and not contract.TRAIN_NETWORK
