"""`sub verify` checks and their order, with the fake runtime, a fake server and a fake clock."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from substratus.runtimes.base import RunSpec
from substratus.verify import Options, Outcome, Skipped, Status, Target, exit_code, verify
from substratus.verify.options import verify_image_tag
from substratus.verify.probe import HttpAnswer
from substratus.verify.session import ROLE_LABEL, RUN_LABEL
from tests.unit.fakes.verify import FAST, ContractRuntime, FakeServer, deps, model_dir, model_target, refused


def statuses(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.clause.id: r.status.value for r in report.checklist.ordered()}


def test_a_contract_keeping_model_passes_everything(tmp_path: Path) -> None:
    rt = ContractRuntime()
    report = verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    assert set(statuses(report).values()) == {"PASS"}, statuses(report)
    assert exit_code(report) == 0
    assert report.image.startswith("localhost/substratus/verify-model:")
    assert rt.items == {}, "every container started by verify is removed"
    assert not list(Path(tempfile.gettempdir()).glob("sub-verify-t1-*")), "temporary directories are removed"


def test_training_gets_the_contract_environment_and_mounts(tmp_path: Path) -> None:
    rt = ContractRuntime()
    options = replace(FAST, epochs=3, batch_size=5, data_limit=7)
    verify(rt, model_target(model_dir(tmp_path / "src")), options, deps=deps())
    train = next(s for s in rt.once_specs if s.command == ["train.sh"])
    assert train.env["TRAIN_DATA_PATH"] == "/data/verify-sample.jsonl"
    assert (train.env["TRAIN_EPOCHS"], train.env["TRAIN_BATCH_SIZE"], train.env["TRAIN_DATA_LIMIT"]) == ("3", "5", "7")
    assert {m.target: m.read_only for m in train.mounts} == {"/data": True, "/model/trained": False,
                                                             "/model/logs": False}
    assert train.labels[ROLE_LABEL] == "verify" and train.labels[RUN_LABEL] == "t1"


def test_every_container_is_labelled_and_named(tmp_path: Path) -> None:
    rt = ContractRuntime()
    verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    started = [name for op, name in rt.calls if op == "run"]
    assert started and all(name.startswith("sub-verify-t1-") for name in started)
    assert all(s.name.startswith("sub-verify-t1-") for s in rt.once_specs)


def test_trained_image_is_built_from_the_image_plus_trained_files(tmp_path: Path) -> None:
    rt = ContractRuntime()
    report = verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    builds = [tag for op, tag in rt.calls if op == "build"]
    assert builds == [report.image, "localhost/substratus/verify-model-trained:t1"]
    assert "localhost/substratus/verify-model-trained:t1" not in rt.image_store, "the trained image is removed"
    assert report.image in rt.image_store, "the source image is kept for the next run"


def test_skip_groups(tmp_path: Path) -> None:
    rt = ContractRuntime()
    report = verify(rt, model_target(model_dir(tmp_path / "src")),
                    replace(FAST, skip=frozenset({"train", "notebook"})), deps=deps())
    got = statuses(report)
    assert got["train.run"] == got["train.image"] == got["notebook.listen"] == "SKIP"
    assert report.checklist.results["train.run"].evidence == "skipped with --skip train"
    assert got["serve.generate"] == "PASS" and exit_code(report) == 0
    assert not any(s.command == ["train.sh"] for s in rt.once_specs)


def test_a_failed_build_skips_what_needs_the_image(tmp_path: Path) -> None:
    rt = ContractRuntime()
    src = model_dir(tmp_path / "src")
    from substratus.build.fromlines import fingerprint
    from substratus.sources.local import digest

    rt.fail_builds.add(verify_image_tag("Model", f"{digest(src)}+{fingerprint(rt, src)}"))
    report = verify(rt, model_target(src), FAST, deps=deps())
    got = statuses(report)
    assert got["dockerfile"] == "PASS" and got["build"] == "FAIL"
    assert all(v == "SKIP" for k, v in got.items() if k not in ("dockerfile", "build"))
    assert "needs 'build' (the image builds), which is FAIL" in report.checklist.results["workdir"].evidence
    assert "the test asked this build to fail" in report.checklist.results["build"].log_tail
    assert exit_code(report) == 1


def test_no_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("")
    report = verify(ContractRuntime(), model_target(tmp_path / "src"), FAST, deps=deps())
    result = report.checklist.results["dockerfile"]
    assert result.status is Status.FAIL and "it holds: train.py" in result.evidence
    assert "put a Dockerfile" in result.fix


def test_wrong_workdir_fails_only_that_clause(tmp_path: Path) -> None:
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src", "/app")), FAST, deps=deps())
    assert [cid for cid, s in statuses(report).items() if s == "FAIL"] == ["workdir"]
    assert "WORKDIR /model" in report.checklist.results["workdir"].evidence


def test_missing_script_skips_its_group(tmp_path: Path) -> None:
    rt = ContractRuntime()
    rt.scripts.remove("train.sh")
    report = verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    got = statuses(report)
    assert got["script.train"] == "FAIL" and got["train.run"] == "SKIP" and got["serve.generate"] == "PASS"
    assert "chmod +x" in report.checklist.results["script.train"].fix


def test_generation_without_the_prompt(tmp_path: Path) -> None:
    server = FakeServer()
    server.routes[("POST", "/generate")] = HttpAnswer(200, b'{"generation": "and so on"}')
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")), FAST, deps=deps(server))
    got = statuses(report)
    assert got["serve.generate"] == "FAIL" and got["train.image"] == "SKIP"
    assert "does not start with the prompt" in report.checklist.results["serve.generate"].evidence


def test_server_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    class Crashing(ContractRuntime):
        def run(self, spec: RunSpec):  # type: ignore[no-untyped-def]
            state = super().run(spec)
            self.exit(spec.name, 1, "ModuleNotFoundError: No module named 'torch'")
            return state

    server = FakeServer()
    server.routes[("GET", "/")] = refused
    d = deps(server)
    report = verify(Crashing(), model_target(model_dir(tmp_path / "src")), replace(FAST, serve_timeout=100),
                    deps=d)
    listen = report.checklist.results["serve.listen"]
    assert listen.status is Status.FAIL and "exited (code 1)" in listen.evidence
    assert "No module named 'torch'" in listen.log_tail
    assert d.clock.now() < 100, "a dead server fails before the timeout"


def test_server_that_never_answers_times_out_without_real_waiting(tmp_path: Path) -> None:
    server = FakeServer()
    server.routes[("GET", "/")] = refused
    d = deps(server)
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")),
                    replace(FAST, serve_timeout=30, skip=frozenset({"train"})), deps=d)
    listen = report.checklist.results["serve.listen"]
    assert listen.status is Status.FAIL and "within 30s" in listen.evidence and "another port" in listen.evidence


def test_bad_body_answers(tmp_path: Path) -> None:
    server = FakeServer()
    server.routes[("POST", "/generate")] = lambda body: HttpAnswer(500, b"Internal Server Error") \
        if body and body.startswith(b'{"prompt": "unterminated') else \
        HttpAnswer(200, b'{"generation": "Shall I compare thee x"}')
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")), FAST, deps=deps(server))
    bad = report.checklist.results["serve.bad-body"]
    assert bad.status is Status.WARN and "-> 500" in bad.evidence
    assert exit_code(report) == 0, "a check the written contract does not state warns, it does not fail the run"
    strict = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src2")), replace(FAST, strict=True),
                    deps=deps(server))
    assert strict.checklist.results["serve.bad-body"].status is Status.FAIL and exit_code(strict) == 1


def test_fuzz_is_skipped_without_openapi(tmp_path: Path) -> None:
    server = FakeServer()
    del server.routes[("GET", "/openapi.json")]
    calls: list[object] = []
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")), FAST,
                    deps=deps(server, fuzz=lambda *a: calls.append(a)))
    fuzz = report.checklist.results["serve.fuzz"]
    assert fuzz.status is Status.SKIP and "GET /openapi.json -> 404" in fuzz.evidence and not calls
    assert exit_code(report) == 0


def test_fuzz_findings_fail(tmp_path: Path) -> None:
    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")), FAST,
                    deps=deps(fuzz=lambda *a: Outcome(False, "2 server errors", log_tail="500 on POST /generate")))
    assert report.checklist.results["serve.fuzz"].status is Status.WARN
    strict = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src2")), replace(FAST, strict=True),
                    deps=deps(fuzz=lambda *a: Outcome(False, "2 server errors")))
    assert strict.checklist.results["serve.fuzz"].status is Status.FAIL


def test_training_failures(tmp_path: Path) -> None:
    rt = ContractRuntime()
    rt.train_exit = 1
    report = verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    run = report.checklist.results["train.run"]
    assert run.status is Status.FAIL and "exit 1" in run.evidence and "OOM" in run.log_tail
    assert statuses(report)["train.output"] == "SKIP"

    rt = ContractRuntime()
    rt.train_files = {}
    report = verify(rt, model_target(model_dir(tmp_path / "src2")), FAST, deps=deps())
    assert [c for c, s in statuses(report).items() if s == "FAIL"] == ["train.output"]


def test_a_check_that_crashes_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    def boom(*args: object) -> Outcome:
        raise RuntimeError("kaput")

    report = verify(ContractRuntime(), model_target(model_dir(tmp_path / "src")), FAST, deps=deps(fuzz=boom))
    fuzz = report.checklist.results["serve.fuzz"]
    assert fuzz.status is Status.WARN and "RuntimeError: kaput" in fuzz.evidence
    assert statuses(report)["notebook.listen"] == "PASS", "the checklist goes on"


def test_interrupt_cleans_up_and_reports(tmp_path: Path) -> None:
    def interrupt(*args: object) -> Outcome:
        raise KeyboardInterrupt

    rt = ContractRuntime()
    report = verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps(fuzz=interrupt))
    assert report.interrupted and exit_code(report) == 130
    assert report.checklist.results["train.run"].evidence == "not checked: interrupted"
    assert rt.items == {}


def test_existing_image(tmp_path: Path) -> None:
    rt = ContractRuntime()
    verify(rt, model_target(model_dir(tmp_path / "src")), FAST, deps=deps())
    image = next(iter(rt.image_store))
    report = verify(rt, Target(kind="Model", image=image), FAST, deps=deps())
    got = statuses(report)
    assert got["dockerfile"] == "SKIP" and got["build"] == "PASS" and got["serve.generate"] == "PASS"
    assert exit_code(report) == 0
    report = verify(rt, Target(kind="Model", image="localhost/nope:1"), FAST, deps=deps())
    assert statuses(report)["build"] == "FAIL" and "does not exist" in report.checklist.results["build"].evidence


def test_an_identical_source_is_not_built_twice(tmp_path: Path) -> None:
    rt = ContractRuntime()
    src = model_dir(tmp_path / "src")
    verify(rt, model_target(src), replace(FAST, skip=frozenset({"train"})), deps=deps())
    report = verify(rt, model_target(src), replace(FAST, skip=frozenset({"train"})), deps=deps())
    assert [op for op, _ in rt.calls].count("build") == 1
    assert "already built" in report.checklist.results["build"].evidence
    verify(rt, model_target(src), replace(FAST, skip=frozenset({"train"}), rebuild=True), deps=deps())
    assert [op for op, _ in rt.calls].count("build") == 2


@pytest.mark.parametrize("load_to,text,fails_with", [
    (None, '{"text": "x"}\n', None),
    ("data.jsonl", '{"text": "x"}\n', "those do not count"),
    (None, "", "is empty (0 bytes)"),
])
def test_dataset_output(tmp_path: Path, load_to: str, text: str, fails_with: str) -> None:
    rt = ContractRuntime()
    rt.load_to, rt.load_text = load_to, text
    src = model_dir(tmp_path / "src", "/dataset")
    report = verify(rt, Target(kind="Dataset", source=str(src)), FAST, deps=deps())
    out = report.checklist.results["load.output"]
    if fails_with is None:
        assert set(statuses(report).values()) == {"PASS"}, statuses(report)
    else:
        assert out.status is Status.FAIL and fails_with in out.evidence
        assert [c for c, s in statuses(report).items() if s == "FAIL"] == ["load.output"]


def test_skipped_outcome_is_recorded_as_skip() -> None:
    from substratus.verify import Checklist

    cl = Checklist("Model")
    assert cl.record("dockerfile", Skipped("no source")).status is Status.SKIP
    assert Options().skip == frozenset() and not cl.failed, "a skip is not a failure, and nothing is skipped by default"
