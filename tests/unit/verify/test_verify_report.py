"""The pure parts of `sub verify`: clause catalogue, skip logic, rendering, JSON shape, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from substratus.build.trained import trained_dockerfile, write_trained_context
from substratus.verify import Checklist, Outcome, Report, Status, clauses_for, exit_code, render_text, to_dict
from substratus.verify.checks_serve import judge_generation
from substratus.verify.report import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK


def test_every_need_names_an_earlier_clause() -> None:
    for kind in ("Model", "Dataset"):
        seen: set[str] = set()
        for clause in clauses_for(kind):
            assert set(clause.needs) <= seen, f"{kind} {clause.id} needs a later or unknown clause"
            assert clause.fix, f"{kind} {clause.id} has no default fix"
            seen.add(clause.id)


def test_skip_reasons() -> None:
    cl = Checklist("Model", skip_groups=frozenset({"notebook"}))
    assert cl.skip_reason("dockerfile") is None
    assert cl.skip_reason("build") == "needs 'dockerfile', which was not checked"
    cl.record("dockerfile", Outcome(True, "found"))
    cl.record("build", Outcome(False, "boom"))
    assert cl.skip_reason("workdir") == "needs 'build' (the image builds), which is FAIL"
    assert cl.skip_reason("notebook.listen") == "skipped with --skip notebook"
    waived = Checklist("Model", waived=frozenset({"dockerfile"}))
    waived.skip("dockerfile", "existing image")
    assert waived.skip_reason("build") is None


def test_fix_only_on_failure() -> None:
    cl = Checklist("Dataset")
    ok = cl.record("dockerfile", Outcome(True, "found", fix="ignored", log_tail="ignored"))
    assert ok.fix == "" and ok.log_tail == ""
    bad = cl.record("build", Outcome(False, "nope", log_tail="step 3 failed"))
    assert bad.fix == clauses_for("Dataset")[1].fix and bad.log_tail == "step 3 failed"
    specific = cl.record("workdir", Outcome(False, "x", fix="do this"))
    assert specific.fix == "do this"


def sample_report(*, interrupted: bool = False) -> Report:
    cl = Checklist("Dataset", skip_groups=frozenset({"notebook"}))
    cl.record("dockerfile", Outcome(True, "/src/Dockerfile"))
    cl.record("build", Outcome(True, "built x"))
    cl.record("workdir", Outcome(False, "image WORKDIR is '/app'"))
    cl.record("script.load", Outcome(True, "found"))
    cl.record("script.notebook", Outcome(True, "found"))
    cl.record("load.run", Outcome(False, "exit 2", log_tail="line one\nLOAD_DATA_PATH is not set"))
    cl.finish("needs load.run")
    return Report("Dataset", "dir /src", "localhost/substratus/verify-dataset:abc", cl, interrupted)


def test_text_checklist() -> None:
    text = render_text(sample_report())
    lines = text.splitlines()
    assert lines[0] == "sub verify dataset: dir /src"
    assert "  PASS  dockerfile       the source has a Dockerfile" in lines
    assert "  FAIL  workdir          WORKDIR is /dataset" in lines
    assert "        fix: add `WORKDIR /dataset` to the Dockerfile" in lines
    assert "        log tail:" in lines and "          | LOAD_DATA_PATH is not set" in lines
    assert "  SKIP  load.output      load.sh writes a non-empty file at exactly $LOAD_DATA_PATH" in lines
    assert lines[-1] == "FAILED: 4 passed, 2 failed, 0 warnings, 3 skipped"
    assert "\x1b[" not in text
    assert "\x1b[31mFAIL\x1b[0m" in render_text(sample_report(), color=True)


def test_json_shape() -> None:
    data = to_dict(sample_report())
    json.dumps(data)  # plain data only
    assert data["ok"] is False and data["summary"] == {"passed": 4, "failed": 2, "warnings": 0, "skipped": 3}
    assert [c["id"] for c in data["clauses"]][:3] == ["dockerfile", "build", "workdir"]
    first = data["clauses"][2]
    assert set(first) == {"id", "title", "group", "status", "contract", "evidence", "fix", "logTail", "seconds"}
    assert first["status"] == "FAIL" and first["group"] == "image"


def test_exit_codes() -> None:
    assert exit_code(sample_report()) == EXIT_FAILED
    assert exit_code(sample_report(interrupted=True)) == EXIT_INTERRUPTED
    cl = Checklist("Dataset")
    cl.record("dockerfile", Outcome(True, "ok"))
    cl.finish("skipped")
    assert exit_code(Report("Dataset", "x", "", cl)) == EXIT_OK
    assert render_text(Report("Dataset", "x", "", cl, interrupted=True)).rstrip().startswith("sub verify")
    assert all(r.status in (Status.PASS, Status.SKIP) for r in cl.ordered())


def test_judge_generation() -> None:
    assert judge_generation("Hi", 200, b'{"generation": "Hi there"}')[0]
    assert judge_generation("Hi", 200, b'{"generation": "Hi", "extra": 1}')[0], "extra keys are allowed"
    assert "status 500" in judge_generation("Hi", 500, b"")[1]
    assert "not JSON" in judge_generation("Hi", 200, b"Hi there")[1]
    assert "not an object" in judge_generation("Hi", 200, b'["Hi"]')[1]
    assert "keys: text" in judge_generation("Hi", 200, b'{"text": "Hi"}')[1]
    assert "does not start with the prompt" in judge_generation("Hi", 200, b'{"generation": "there"}')[1]


def test_trained_context_matches_the_control_plane(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trained = tmp_path / "trained"
    (trained / "sub").mkdir(parents=True)
    (trained / "sub" / "model.bin").write_text("w")
    ctx = write_trained_context("localhost/base:1", trained, tmp_path / "ctx")
    assert (ctx / "Dockerfile").read_text() == "FROM localhost/base:1\nCOPY trained/ /model/saved/\n"
    assert (ctx / "trained" / "sub" / "model.bin").read_text() == "w"
    assert trained_dockerfile("b") == "FROM b\nCOPY trained/ /model/saved/\n"


def test_every_failure_names_the_contract_sentence_or_says_it_is_beyond_the_contract() -> None:
    from substratus.verify.clauses import Outcome, clauses_for
    from substratus.verify.report import render_result

    written = [c for c in clauses_for("Model") if c.written]
    beyond = {c.id for c in clauses_for("Model") if not c.written}
    assert beyond == {"serve.bad-body", "serve.fuzz"}
    cl = Checklist("Model")
    result = cl.record("workdir", Outcome(False, "WORKDIR is /"))
    assert result.status.value == "FAIL"
    assert any(line.strip().startswith("contract: Workspace directory should be /model/")
               for line in render_result(result))
    warn = cl.record("serve.bad-body", Outcome(False, "-> 500"))
    assert warn.status.value == "WARN" and "beyond the written contract" in "\n".join(render_result(warn))
    contract = (Path(__file__).resolve().parents[4] / "shared" / "contract" / "container-contracts.md")
    if contract.exists():  # each cited sentence's key words appear in the contract text
        text = contract.read_text()
        for c in written:
            for word in ("/model/saved", "/model/trained", "8080", "8888", "WORKDIR", "LOAD_DATA_PATH"):
                if word in c.contract:
                    assert word in text, (c.id, word)
