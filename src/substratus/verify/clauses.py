"""The clauses `sub verify` checks, and the bookkeeping of their results.

Pure data and pure functions: which clauses a kind has, which group each
belongs to (for `--skip`), which earlier clauses each one needs, and what an
image author should change when it fails. `Checklist` records outcomes in
order and decides, without running anything, whether a clause must be
skipped. The parts that run containers live in `checks_*` and `runner`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Union


class Status(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"   # a clause the written contract states is broken
    WARN = "WARN"   # a check beyond the written contract found a problem (FAIL with --strict)
    SKIP = "SKIP"


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    group: str
    needs: tuple[str, ...] = ()
    fix: str = ""  # what the image author should change when it fails
    contract: str = ""  # the sentence of the written contract it rests on; "" = a check beyond the contract

    @property
    def written(self) -> bool:
        return bool(self.contract)


@dataclass
class Outcome:
    """What one check found: pass/fail, what was run and seen, and optionally a specific fix."""

    ok: bool
    evidence: str
    fix: str = ""
    log_tail: str = ""


@dataclass
class Skipped:
    """A check that found it has nothing to check (no /openapi.json, a tool not installed...)."""

    reason: str


@dataclass
class Result:
    clause: Clause
    status: Status
    evidence: str
    fix: str = ""
    log_tail: str = ""
    seconds: float = 0.0


# Groups a user can pass to --skip. "image" clauses always run.
GROUPS = ("serve", "schemathesis", "train", "notebook", "load")


def _model_clauses() -> list[Clause]:
    return [
        Clause("dockerfile", "the source has a Dockerfile", "image",
               fix="put a Dockerfile at the root of the source directory (or point --path at the directory holding it)",
               contract="The repo should contain a Dockerfile."),
        Clause("build", "the image builds", "image", ("dockerfile",),
               fix="fix the Dockerfile or the build context; the build log tail is above",
               contract="As a part of building the Dockerfile: model artifacts should be saved into /model/saved/."),
        Clause("workdir", "WORKDIR is /model", "image", ("build",), fix="add `WORKDIR /model` to the Dockerfile",
               contract="Workspace directory should be /model/ (i.e. WORKDIR /model)."),
        Clause("script.serve", "serve.sh is on PATH and executable", "image", ("build",),
               fix="COPY serve.sh into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
               contract="Scripts must be located in $PATH: serve.sh."),
        Clause("script.train", "train.sh is on PATH and executable", "image", ("build",),
               fix="COPY train.sh into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
               contract="Scripts must be located in $PATH: train.sh."),
        Clause("script.notebook", "notebook.sh is on PATH and executable", "image", ("build",),
               fix="COPY notebook.sh into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
               contract="Scripts must be located in $PATH: notebook.sh."),
        Clause("saved", "/model/saved is not empty after the build", "image", ("build",),
               fix="save the model artifacts into /model/saved/ during the build (a RUN step that downloads or "
                   "creates them, or COPY them in)",
               contract="Model artifacts (i.e. model.pt, tokenizer.pt) should be saved into /model/saved/."),
        Clause("serve.listen", "serve.sh answers HTTP on port 8080", "serve", ("script.serve",),
               fix="make serve.sh start a web server on 0.0.0.0:8080 (not 127.0.0.1, not another port) and keep "
                   "it in the foreground",
               contract="serve.sh: Run a webserver on port 8080."),
        Clause("serve.docs", "GET /docs answers 200", "serve", ("serve.listen",),
               fix="serve API documentation at GET /docs with status 200",
               contract="serve.sh endpoints: GET /docs - Serves API Documentation."),
        Clause("serve.generate", "POST /generate answers {\"generation\": prompt + completion}", "serve",
               ("serve.listen",),
               fix="POST /generate must accept {\"prompt\": str, \"max_new_tokens\": int} and answer 200 with a "
                   "JSON object whose \"generation\" string starts with the prompt",
               contract="POST /generate accepts {\"prompt\": ..., \"max_new_tokens\": 100} and responds with {\"generation\": \"<your-prompt><completion>\"}."),
        Clause("serve.bad-body", "POST /generate with a malformed body answers 4xx", "serve", ("serve.listen",),
               fix="validate the request body and answer 400 or 422 when it is not valid JSON; a 5xx or a dropped "
                   "connection means the server crashed on bad input"),
        Clause("serve.fuzz", "schemathesis finds no 5xx from /openapi.json", "schemathesis", ("serve.listen",),
               fix="fix the requests schemathesis reported: no input described by /openapi.json may cause a 5xx"),
        Clause("train.run", "train.sh exits 0 with the TRAIN_* variables", "train", ("script.train",),
               fix="make train.sh read TRAIN_DATA_PATH (JSONL), TRAIN_DATA_LIMIT, TRAIN_BATCH_SIZE and TRAIN_EPOCHS "
                   "and exit 0 when training succeeds; the log tail shows where it stopped",
               contract="The following parameters are communicated through environment variables when train.sh is called and should be taken into account."),
        Clause("train.logs", "train.sh writes logs to stdout/stderr", "train", ("train.run",),
               fix="print progress (epochs, batches, loss) to stdout or stderr",
               contract="train.sh: Writes logs to STDOUT/STDERR and optionally to /model/logs/."),
        Clause("train.output", "train.sh leaves the trained model in /model/trained", "train", ("train.run",),
               fix="save the trained model files into /model/trained/ (that directory is what the control plane "
                   "copies into the new image's /model/saved/)",
               contract="train.sh: Saves new trained model to /model/trained/."),
        Clause("train.image", "an image built from /model/trained serves /generate", "train",
               ("train.output", "serve.generate"),
               fix="serve.sh must load the model from /model/saved/, and train.sh must write everything serve.sh "
                   "needs there into /model/trained/",
               contract="/model/trained/ will be copied into the new container's /model/saved/ directory; serve.sh loads model from disk (/model/saved/)."),
        Clause("notebook.listen", "notebook.sh answers HTTP on port 8888", "notebook", ("script.notebook",),
               fix="make notebook.sh start Jupyter (or another server) on 0.0.0.0:8888, e.g. "
                   "`jupyter lab --ip=0.0.0.0 --port=8888 --no-browser`",
               contract="notebook.sh: Should start a Jupyter Lab/Notebook environment. Should serve on port 8888."),
    ]


def _dataset_clauses() -> list[Clause]:
    return [
        Clause("dockerfile", "the source has a Dockerfile", "image",
               fix="put a Dockerfile at the root of the source directory (or point --path at the directory holding it)",
               contract="The repo should contain a Dockerfile."),
        Clause("build", "the image builds", "image", ("dockerfile",),
               fix="fix the Dockerfile or the build context; the build log tail is above",
               contract="The repo should contain a Dockerfile."),
        Clause("workdir", "WORKDIR is /dataset", "image", ("build",), fix="add `WORKDIR /dataset` to the Dockerfile",
               contract="Workspace directory should be /dataset/ (i.e. WORKDIR /dataset)."),
        Clause("script.load", "load.sh is on PATH and executable", "image", ("build",),
               fix="COPY load.sh into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
               contract="Scripts must be located in $PATH: load.sh."),
        Clause("script.notebook", "notebook.sh is on PATH and executable", "image", ("build",),
               fix="COPY notebook.sh into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
               contract="Scripts must be located in $PATH: notebook.sh."),
        Clause("load.run", "load.sh exits 0 with LOAD_DATA_PATH set", "load", ("script.load",),
               fix="make load.sh exit 0 when loading succeeds; the log tail shows where it stopped",
               contract="load.sh: Saves data to disk in the file path specified by the LOAD_DATA_PATH environment variable."),
        Clause("load.logs", "load.sh writes logs to stdout/stderr", "load", ("load.run",),
               fix="print progress (what is downloaded or converted, how many records) to stdout or stderr",
               contract="load.sh: Writes logs to STDOUT/STDERR and optionally to /dataset/logs/."),
        Clause("load.output", "load.sh writes a non-empty file at exactly $LOAD_DATA_PATH", "load", ("load.run",),
               fix="write the data to the path in the LOAD_DATA_PATH environment variable (it is /data/<filename>); "
                   "do not pick the file name yourself",
               contract="load.sh: Saves data to disk in the file path specified by the LOAD_DATA_PATH environment variable."),
        Clause("notebook.listen", "notebook.sh answers HTTP on port 8888", "notebook", ("script.notebook",),
               fix="make notebook.sh start Jupyter (or another server) on 0.0.0.0:8888, e.g. "
                   "`jupyter lab --ip=0.0.0.0 --port=8888 --no-browser`",
               contract="notebook.sh: Should start a Jupyter Lab/Notebook environment. Should serve on port 8888."),
    ]


def clauses_for(kind: str) -> list[Clause]:
    """The ordered clauses of `kind` ("Model" or "Dataset")."""
    if kind == "Model":
        return _model_clauses()
    if kind == "Dataset":
        return _dataset_clauses()
    raise ValueError(f"no contract for kind {kind!r}")


@dataclass
class Checklist:
    """Results in clause order; decides skips from --skip and from earlier results."""

    kind: str
    skip_groups: frozenset[str] = frozenset()
    waived: frozenset[str] = frozenset()  # needs that count as met even when skipped (--image: "dockerfile")
    results: dict[str, Result] = field(default_factory=dict)
    strict: bool = False  # --strict: a broken check beyond the written contract is a FAIL too

    def __post_init__(self) -> None:
        self.clauses = {c.id: c for c in clauses_for(self.kind)}

    def skip_reason(self, clause_id: str) -> Optional[str]:
        """Why `clause_id` must not run, or None when it should."""
        clause = self.clauses[clause_id]
        if clause.group in self.skip_groups:
            return f"skipped with --skip {clause.group}"
        for need in clause.needs:
            if need in self.waived:
                continue
            got = self.results.get(need)
            if got is None:
                return f"needs {need!r}, which was not checked"
            if got.status not in (Status.PASS, Status.WARN):
                return f"needs {need!r} ({self.clauses[need].title}), which is {got.status.value}"
        return None

    def record(self, clause_id: str, outcome: Union[Outcome, Skipped], seconds: float = 0.0) -> Result:
        if isinstance(outcome, Skipped):
            return self.skip(clause_id, outcome.reason)
        clause = self.clauses[clause_id]
        status = Status.PASS if outcome.ok else Status.FAIL if clause.written or self.strict else Status.WARN
        fix = "" if outcome.ok else (outcome.fix or clause.fix)
        result = Result(clause, status, outcome.evidence, fix, "" if outcome.ok else outcome.log_tail, seconds)
        self.results[clause_id] = result
        return result

    def skip(self, clause_id: str, reason: str) -> Result:
        result = Result(self.clauses[clause_id], Status.SKIP, reason)
        self.results[clause_id] = result
        return result

    def finish(self, reason: str = "not reached") -> None:
        """Mark every clause without a result as skipped (after an interruption, say)."""
        for cid in self.clauses:
            if cid not in self.results:
                self.skip(cid, reason)

    def ordered(self) -> list[Result]:
        return [self.results[cid] for cid in self.clauses if cid in self.results]

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.results.values())

    @property
    def warned(self) -> bool:
        return any(r.status is Status.WARN for r in self.results.values())
