"""Runs the checklist for one target: the order of the checks and the state they share.

`verify()` is the entry point (the CLI calls it; tests call it with a
FakeRuntime, a fake HTTP probe and a fake fuzzer). Each clause goes through
`Verifier.step`, which asks the `Checklist` whether it may run, times it,
turns exceptions into a FAIL with the error's text, and reports progress.
Every container, image and temporary directory belongs to a `Session`, which
removes them when the run ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from substratus import contract
from substratus.build.trained import write_trained_context
from substratus.errors import BuildError, SubstratusError
from substratus.runtimes.base import BuildSpec, Runtime
from substratus.verify import checks_image as ci
from substratus.verify import checks_jobs as cj
from substratus.verify import checks_serve as cs
from substratus.verify.clauses import Checklist, Outcome, Result, Skipped, Status
from substratus.verify.fuzz import Fuzzer, has_openapi, run_schemathesis
from substratus.verify.options import Options, Target, trained_image_tag
from substratus.verify.probe import Clock, HttpProbe, HttpxProbe
from substratus.verify.report import Report
from substratus.verify.session import Session

Progress = Callable[[str], None]
Check = Callable[[], Union[Outcome, Skipped]]


@dataclass
class Deps:
    """The seams unit tests replace."""

    probe: HttpProbe = field(default_factory=HttpxProbe)
    fuzzer: Fuzzer = run_schemathesis
    clock: Clock = field(default_factory=Clock)
    run_id: Optional[str] = None


def verify(runtime: Runtime, target: Target, options: Options, *, progress: Progress = lambda _: None,
           deps: Optional[Deps] = None) -> Report:
    """Check `target` against its kind's contract; never leaves a container behind."""
    return Verifier(runtime, target, options, progress, deps or Deps()).run()


class Verifier:
    def __init__(self, runtime: Runtime, target: Target, options: Options, progress: Progress,
                 deps: Deps) -> None:
        self.target, self.options, self.progress, self.deps = target, options, progress, deps
        self.session = Session(runtime, run_id=deps.run_id)
        self.rt = self.session.runtime
        waived = frozenset({"dockerfile"}) if target.image else frozenset()
        self.checklist = Checklist(target.kind, options.skip, waived, strict=options.strict)
        self.image = ""
        self.source = ci.Source()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Report:
        interrupted = False
        with self.session:
            try:
                self.image_clauses()
                if self.target.kind == "Model":
                    self.serve_clauses()
                    self.train_clauses()
                else:
                    self.load_clauses()
                self.notebook_clauses()
            except KeyboardInterrupt:
                interrupted = True
                self.progress("interrupted: removing the containers and files this run created")
                self.checklist.finish("not checked: interrupted")
        if self.session.temp_dirs:
            self.progress(f"could not remove {', '.join(map(str, self.session.temp_dirs))} (files owned by "
                          f"another user); remove them with `{self.rt.engine} unshare rm -rf DIR`")
        return Report(self.target.kind, self.target.describe(), self.image, self.checklist, interrupted)

    def step(self, clause_id: str, check: Check) -> Result:
        reason = self.checklist.skip_reason(clause_id)
        if reason:
            return self._announce(self.checklist.skip(clause_id, reason))
        clause = self.checklist.clauses[clause_id]
        self.progress(f"-> {clause_id}: {clause.title}")
        start = self.deps.clock.now()
        outcome = self._guarded(check)
        return self._announce(self.checklist.record(clause_id, outcome, self.deps.clock.now() - start))

    def step_many(self, clause_ids: list[str], check: Callable[[], dict[str, Outcome]]) -> None:
        """Clauses that one probe answers together (the scripts on PATH)."""
        reason = self.checklist.skip_reason(clause_ids[0])
        if reason:
            for cid in clause_ids:
                self._announce(self.checklist.skip(cid, reason))
            return
        self.progress(f"-> {', '.join(clause_ids)}")
        start = self.deps.clock.now()
        try:
            outcomes = check()
        except Exception as err:  # noqa: BLE001 - see _failure
            outcomes = {cid: self._failure(err) for cid in clause_ids}
        seconds = self.deps.clock.now() - start
        for cid in clause_ids:
            self._announce(self.checklist.record(cid, outcomes[cid], seconds))

    def _guarded(self, check: Check) -> Union[Outcome, Skipped]:
        try:
            return check()
        except Exception as err:  # noqa: BLE001 - one broken check must not stop the checklist
            return self._failure(err)

    @staticmethod
    def _failure(err: Exception) -> Outcome:
        if isinstance(err, BuildError):
            return Outcome(False, str(err), log_tail=err.log_tail)
        if isinstance(err, SubstratusError):
            return Outcome(False, str(err))
        return Outcome(False, f"sub verify could not run this check: {type(err).__name__}: {err} "
                              f"(a bug in sub verify? please report it)")

    def _announce(self, result: Result) -> Result:
        note = f" ({result.evidence.splitlines()[0][:100]})" if result.status is not Status.PASS else ""
        self.progress(f"   {result.status.value} {result.clause.id}{note}")
        return result

    # -- groups --------------------------------------------------------------------------
    def image_clauses(self) -> None:
        def dockerfile() -> Union[Outcome, Skipped]:
            outcome, self.source = ci.resolve_source(self.target, lambda: self.session.temp_dir("git"))
            return outcome

        def build() -> Outcome:
            outcome, self.image = ci.build_image(self.rt, self.target, self.source, self.options, self.progress)
            if self.image and not self.options.keep_image and not self.target.image:
                self.session.images.append(self.image)
            return outcome

        kind = self.target.kind
        self.step("dockerfile", dockerfile)
        self.step("build", build)
        self.step("workdir", lambda: ci.check_workdir(self.rt, self.image, kind))
        self.step_many([ci.SCRIPT_CLAUSES[s] for s in contract.SCRIPTS[kind]],
                       lambda: ci.check_scripts(self.rt, self.image, kind))
        if kind == "Model":
            self.step("saved", lambda: ci.check_saved(self.rt, self.image))

    def serve_clauses(self) -> None:
        server: Optional[cs.Server] = None
        o, probe = self.options, self.deps.probe

        def listen() -> Outcome:
            nonlocal server
            server = cs.start(self.rt, self.image, "serve.sh", cs.SERVE_PORT)
            return cs.wait_listening(self.rt, probe, server, o.serve_timeout, self.deps.clock)

        def fuzz() -> Union[Outcome, Skipped]:
            assert server is not None
            why = has_openapi(probe, server.url, timeout=30)
            if why:
                return Skipped(why)
            return self.deps.fuzzer(server.url, self.session.temp_dir("fuzz"), o.fuzz_examples, o.fuzz_timeout)

        try:
            self.step("serve.listen", listen)
            self.step("serve.docs", lambda: cs.check_docs(probe, self._up(server), o.request_timeout))
            self.step("serve.generate", lambda: cs.check_generate(probe, self._up(server), o.prompt,
                                                                  o.max_new_tokens, o.request_timeout,
                                                                  o.serve_timeout, self.deps.clock))
            self.step("serve.bad-body", lambda: cs.check_bad_body(probe, self._up(server), o.request_timeout))
            self.step("serve.fuzz", fuzz)
        finally:
            if server is not None:
                self.session.forget_container(server.name)

    @staticmethod
    def _up(server: Optional[cs.Server]) -> cs.Server:
        assert server is not None, "serve.listen passed, so the server exists"
        return server

    def train_clauses(self) -> None:
        job: Optional[cj.JobRun] = None

        def run() -> Outcome:
            nonlocal job
            s = self.session
            job = cj.run_train(self.rt, self.image, self.options, s.temp_dir("data"), s.temp_dir("trained"),
                               s.temp_dir("logs"))
            return cj.judge_exit(job)

        self.step("train.run", run)
        self.step("train.logs", lambda: cj.judge_logs(self._ran(job)))
        self.step("train.output", lambda: cj.judge_trained(self._ran(job)))
        self.step("train.image", lambda: self.trained_image(self._ran(job).out_dir))

    @staticmethod
    def _ran(job: Optional[cj.JobRun]) -> cj.JobRun:
        assert job is not None, "the run clause passed, so the job ran"
        return job

    def trained_image(self, trained: Path) -> Outcome:
        """Build FROM the image + the trained/ output copied into the saved model's directory, as the
        control plane does (`build.trained`), and serve it."""
        context = write_trained_context(self.image, trained, self.session.temp_dir("trained-image") / "ctx")
        tag = trained_image_tag(self.session.run_id)
        self.session.images.append(tag)
        self.progress(f"building {tag} (FROM {self.image} + COPY trained/ {contract.SAVED_DIR}/)")
        self.rt.build(BuildSpec(context=context, tag=tag, labels=ci.image_labels("Model")),
                      lambda line: self.progress(f"  | {line}") if self.options.build_log else None)
        server = cs.start(self.rt, tag, "serve.sh", cs.SERVE_PORT)
        try:
            up = cs.wait_listening(self.rt, self.deps.probe, server, self.options.serve_timeout, self.deps.clock)
            if not up.ok:
                return Outcome(False, f"built {tag}, but: {up.evidence}", log_tail=up.log_tail)
            gen = cs.check_generate(self.deps.probe, server, self.options.prompt, self.options.max_new_tokens,
                                    self.options.request_timeout, self.options.serve_timeout, self.deps.clock)
            return Outcome(gen.ok, f"built {tag} from the trained files; {up.evidence}\n{gen.evidence}",
                           fix=gen.fix, log_tail="" if gen.ok else cs.log_tail(self.rt, server.name))
        finally:
            self.session.forget_container(server.name)

    def load_clauses(self) -> None:
        job: Optional[cj.JobRun] = None
        filename = f"verify-{self.session.run_id}.jsonl"

        def run() -> Outcome:
            nonlocal job
            s = self.session
            job = cj.run_load(self.rt, self.image, self.options, s.temp_dir("data"), s.temp_dir("logs"), filename)
            return cj.judge_exit(job)

        self.step("load.run", run)
        self.step("load.logs", lambda: cj.judge_logs(self._ran(job)))
        self.step("load.output", lambda: cj.judge_loaded(self._ran(job), filename))

    def notebook_clauses(self) -> None:
        server: Optional[cs.Server] = None

        def listen() -> Outcome:
            nonlocal server
            server = cs.start(self.rt, self.image, "notebook.sh", cs.NOTEBOOK_PORT)
            return cs.wait_listening(self.rt, self.deps.probe, server, self.options.notebook_timeout,
                                     self.deps.clock)

        try:
            self.step("notebook.listen", listen)
        finally:
            if server is not None:
                self.session.forget_container(server.name)
