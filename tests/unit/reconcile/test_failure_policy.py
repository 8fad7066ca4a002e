"""One failure policy for both executors (reconcile.dispatch, reconcile.outcomes), in kopf's terms:
a temporary error is retried with capped backoff while the object stays in progress and says why;
a permanent one is recorded as failed until the object is applied again. Driven through the whole
local control plane on the fake runtime, with a fake clock, and through the dispatcher alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.errors import (
    AlreadyExists,
    BuildError,
    CommandError,
    EngineError,
    ImageMissing,
    NameInUse,
    PortInUse,
    SourceError,
    Unauthorized,
    ValidationError,
)
from substratus.reconcile.actions import BuildImage, CheckContract, StartContainer
from substratus.reconcile.dispatch import Dispatcher
from substratus.reconcile.outcomes import RETRY_CAP, Failed, Outcome, failure, retry_delay, temporary
from substratus.reconcile.state import Source
from substratus.resources.objectkey import ObjectKey
from substratus.resources.status import Reason
from substratus.runtimes.base import Completed, RunSpec
from tests.unit.fakes.controlplane import Env, apply, ready_condition, reason, server, settle, status

OWNER = ObjectKey("Model", "default", "m")


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


# ---- which errors are which ---------------------------------------------------------------------

@pytest.mark.parametrize("err", [
    EngineError("podman is not installed"), CommandError(["podman", "ps"], 125, "database is locked"),
    NameInUse("x"), PortInUse("x"), ImageMissing("x"), AlreadyExists("x"), OSError("disk"),
])
def test_temporary_errors(err: BaseException) -> None:
    assert temporary(err)


@pytest.mark.parametrize("err", [
    BuildError("exit 1"), Unauthorized("no token"), ValidationError([("spec", "bad")]), SourceError("gone"),
    CommandError(["podman", "run"], 125, "Error: unresolvable CDI devices", temporary=False),
    KeyError("a bug"),
])
def test_permanent_errors(err: BaseException) -> None:
    assert not temporary(err)


def test_the_backoff_doubles_up_to_a_cap() -> None:
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays[:3] == [0.5, 1.0, 2.0] and delays[-1] == RETRY_CAP
    assert delays == sorted(delays)


def test_a_permanent_failure_is_recorded_under_the_key_the_planner_reads() -> None:
    start = StartContainer(spec=RunSpec(name="c", image="i"), failure_key="start:c", failure_reason=Reason.SERVE_FAILED)
    assert failure(start, Unauthorized("forbidden")) == Failed("start:c", Reason.SERVE_FAILED,
                                                               "could not start c: forbidden")
    assert failure(CheckContract(image="i", kind="Model"), KeyError("k")).message == "internal error: KeyError('k')"


# ---- the dispatcher ----------------------------------------------------------------------------------

class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


class Flaky(Dispatcher):
    def __init__(self, errors: list[BaseException]) -> None:
        self.clock, self.errors, self.reports = Clock(), errors, []  # type: ignore[var-annotated]
        super().__init__(lambda owner, outcomes: self.reports.append(outcomes), build_workers=0, workers=0,
                         clock=self.clock)
        self.runs = 0

    def slow(self, owner: ObjectKey, action: object) -> list[Outcome]:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)
        return []


BUILD = BuildImage(tag="t", source=Source(description="dir", revision="r", context="/c"))


def test_a_temporary_failure_holds_the_action_for_its_backoff_then_lets_it_run() -> None:
    d = Flaky([EngineError("engine down"), EngineError("engine down")])
    assert d.submit(OWNER, BUILD) == "scheduled" and d.reports == [[]]  # nothing recorded, the owner looks again
    assert d.in_flight(OWNER) == {BUILD.key} and d.retrying(OWNER)[BUILD.key].message == "engine down"
    assert d.retrying(OWNER)[BUILD.key].at == 100.5
    assert d.submit(OWNER, BUILD) == "backing-off" and d.runs == 1
    d.clock.t = 100.6
    assert d.in_flight(OWNER) == frozenset()
    assert d.submit(OWNER, BUILD) == "scheduled" and d.runs == 2
    assert d.retrying(OWNER)[BUILD.key].at == pytest.approx(101.6)  # the second failure in a row waits 1 s
    d.clock.t = 102
    d.submit(OWNER, BUILD)
    assert d.runs == 3 and d.retrying(OWNER) == {} and d.reports[-1] == []


def test_a_wait_long_over_is_forgotten() -> None:
    d = Flaky([EngineError("engine down")])
    d.submit(OWNER, BUILD)
    d.clock.t += 3 * RETRY_CAP
    assert d.retrying(OWNER) == {} and d._backoff._failed == {}


def test_a_permanent_failure_is_reported_at_once() -> None:
    d = Flaky([BuildError("image build failed (exit 1)")])
    d.submit(OWNER, BUILD)
    [[outcome]] = d.reports
    assert outcome == Failed(BUILD.key, Reason.BUILD_FAILED, "image build failed (exit 1)")
    assert d.in_flight(OWNER) == frozenset()


# ---- through the local control plane ---------------------------------------------------------------

def test_an_engine_failing_a_build_keeps_the_model_building_and_says_why(env: Env) -> None:
    env.rt.fail("build", CommandError(["podman", "build"], 125, "Cannot connect to Podman"), name=None)
    apply(env)
    cond = ready_condition(env, "Dataset", "ds")
    assert cond["reason"] == "Building" and cond["status"] == "Unknown"
    assert "retrying after a temporary failure" in cond["message"] and "Cannot connect to Podman" in cond["message"]
    env.advance(1.0)  # the backoff has passed: built, and on its way
    settle(env)
    assert status(env, "Dataset", "ds")["ready"]


def test_a_contract_probe_that_timed_out_is_tried_again_not_a_violation(env: Env) -> None:
    answers = env.rt.once
    timeouts = [1]

    def once(spec: RunSpec) -> Completed:
        if timeouts:
            timeouts.pop()
            return Completed(124, "(timed out after 120s)", timed_out=True)
        return answers(spec)

    env.rt.once = once
    apply(env)
    objects = (("Dataset", "ds"), ("Model", "base"))
    said = [c["message"] for kind, name in objects for c in status(env, kind, name)["conditions"]
            if c["type"] == "Built" and c["status"] == "Unknown"]
    assert any("retrying after a temporary failure" in m and "did not finish" in m for m in said), said
    settle(env)
    assert all(reason(env, kind, name) != "ContractViolation" for kind, name in objects)
    env.advance(1.0)
    settle(env)
    assert all(status(env, kind, name)["ready"] for kind, name in objects)
    assert sum(1 for c in env.rt.calls if c[0] == "run_once") == 3  # two images, one checked twice


def test_a_permanent_engine_refusal_fails_the_object(env: Env) -> None:
    env.rt.fail("build", CommandError(["podman", "build"], 125, "Error: invalid reference format",
                                      temporary=False))
    apply(env)
    cond = ready_condition(env, "Dataset", "ds")
    assert cond["reason"] == "BuildFailed" and cond["status"] == "False"
    assert "invalid reference format" in cond["message"]


def test_a_name_in_use_looks_again_and_retries_later(env: Env) -> None:
    apply(env)
    settle(env)
    name = server(env).spec.name
    env.rt.remove(name)
    env.rt.fail("run", NameInUse(f"a container named {name} exists already"), name=name)
    env.drain()
    assert reason(env, "ModelServer", "tuned") in ("Starting", "NotReady")
    env.advance(1.0)
    assert server(env).spec.name == name and server(env).state.running


def test_a_taken_port_is_chosen_again_without_waiting(env: Env) -> None:
    apply(env)
    settle(env)
    name = server(env).spec.name
    port = server(env).spec.ports[8080]
    env.rt.remove(name)
    env.rt.fail("run", PortInUse(f"the host port is taken: 127.0.0.1:{port}"), name=name)
    env.drain()
    assert server(env).spec.ports[8080] != port
