"""`sub apply --wait`: the verdict over watch events, plain lines off a terminal, rich bars on one."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from substratus.cli.progress import RichView, describe_state
from substratus.cli.wait import PlainView, verdict, wait_for

KEY = ("Model", "default", "tuned")


def obj(reason: str, ready: bool = False, gen: int = 1, observed: int = 1, progress: Any = None,
        name: str = "tuned") -> dict[str, Any]:
    status: dict[str, Any] = {"ready": ready, "observedGeneration": observed,
                              "conditions": [{"type": "Ready", "status": str(ready), "reason": reason,
                                              "message": f"{reason.lower()} message"}]}
    if progress:
        status["progress"] = progress
    return {"kind": "Model", "metadata": {"name": name, "namespace": "default", "generation": gen},
            "status": status}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def events(*objs: dict[str, Any], bookmark_after: int = 0) -> list[dict[str, Any]]:
    out = [{"type": "MODIFIED", "object": o} for o in objs]
    out.insert(bookmark_after, {"type": "BOOKMARK", "resourceVersion": "1"})
    return out


def test_wait_ends_when_ready_and_prints_a_line_per_change() -> None:
    out = io.StringIO()
    v = wait_for(events(obj("Building"), obj("Building"), obj("Training"), obj("Trained", ready=True)), {KEY}, 60,
                 out=out, clock=Clock())
    assert v.done and not v.failed and not v.pending
    lines = out.getvalue().splitlines()
    assert [line.split("model/tuned")[1].split()[0] for line in lines] == ["Building", "Training", "ready"], \
        "a repeat is not printed"


def test_wait_fails_on_a_failed_reason_of_the_current_generation_only() -> None:
    old_failure = obj("TrainFailed", gen=2, observed=1)
    assert not verdict([old_failure]).done, "a failure of an earlier generation says nothing about this one"
    v = wait_for(events(obj("Training"), obj("TrainFailed")), {KEY}, 60, out=io.StringIO(), clock=Clock())
    assert v.done and [o["status"]["conditions"][0]["reason"] for o in v.failed] == ["TrainFailed"]


def test_a_stream_that_ends_first_is_a_timeout_with_what_is_pending() -> None:
    v = wait_for(events(obj("Building")), {KEY}, 60, out=io.StringIO(), clock=Clock())
    assert not v.done and [o["metadata"]["name"] for o in v.pending] == ["tuned"]


def test_describe_state_of_a_training_job_shows_its_numbers() -> None:
    p = {"phase": "train", "step": 40, "totalSteps": 100, "percent": 40.0, "loss": 1.23456, "epoch": 1.0,
         "etaSeconds": 75}
    text, percent, finished = describe_state(obj("Training", progress=p))
    assert percent == 40.0 and not finished
    assert text == "Training · step 40/100 · epoch 1 · loss 1.235 · ETA 75s"
    assert describe_state(obj("Building", progress=p))[1] is None, "a build after a run has no measure"
    assert describe_state(obj("Trained", ready=True)) == ("[green]✓ Trained[/]", 100.0, True)
    assert describe_state(obj("TrainFailed"))[2] is True


def test_rich_view_draws_a_bar_per_object_with_percent_and_the_final_state() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    keys = {KEY, ("Model", "default", "base")}
    p = {"phase": "train", "step": 40, "totalSteps": 100, "percent": 40.0, "loss": 1.5}
    view = RichView(keys, console=console)
    wait_for(events(obj("Building", name="base"), obj("Ready", ready=True, name="base"), obj("Training", progress=p),
                    {**obj("Trained", ready=True), "status": {**obj("Trained", ready=True)["status"], "progress":
                                                              {**p, "step": 100, "percent": 100.0}}}),
             keys, 60, clock=Clock(), view=view)
    screen = buf.getvalue()
    assert "model/base" in screen and "model/tuned" in screen
    assert "40%" in screen and "loss 1.5" in screen, "the training bar showed the job's numbers"
    assert "✓ Trained" in screen and "✓ Ready" in screen and "━" in screen


def test_plain_view_marks_ready_with_a_check_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    PlainView(tty).update(obj("Trained", ready=True), 1.0)
    PlainView(pipe).update(obj("Trained", ready=True), 1.0)
    assert "✓" in tty.getvalue() and "✓" not in pipe.getvalue()


def test_a_dependent_still_saying_dependency_failed_does_not_end_a_retry() -> None:
    """After re-applying a failed model, its server says DependencyFailed until the model reports again."""
    retried = obj("Training", gen=2, observed=2)
    server = {**obj("DependencyFailed", name="srv"), "kind": "ModelServer", "spec": {"modelName": "tuned"}}
    assert not verdict([retried, server]).done
    assert not verdict([obj("Trained", ready=True, gen=2, observed=2), server]).done, "the server will follow"
    v = verdict([obj("TrainFailed", gen=2, observed=2), server])
    assert v.done and len(v.failed) == 2, "the model's own failure ends it, and the server's with it"
    assert verdict([server]).done, "a dependency not waited for: its failure is the answer"
