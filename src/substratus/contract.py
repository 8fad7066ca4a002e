"""The container contract as data: the one place its facts are written down.

The contract (`../shared/contract/container-contracts.md`) is a promise between
an image and whoever runs it. Everything that runs images or checks them reads
the promise from here, so a port, a path, an environment variable name or the
readiness rule is stated once:

    the planners (reconcile)          what to run: env, mounts, ports, tokens
    the local backend (local)         probes servers and notebooks by `READINESS`
    the Kubernetes generators         render the same `READINESS` as a readinessProbe
    (runtimes.kubernetes)             and the same env and ports into pod specs
    the control plane's contract      name a broken clause by its `id` in a
    check (build.conformance)         ContractViolation, with the clause's fix
    `sub verify` (verify)             checks every clause of `CLAUSES` and prints the same ids

Pure data and pure functions of the standard library only, at the bottom of the
layers (only `errors` is below it), so every layer may read it. Messages may
format these values; no other module writes them as literals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

Kind = Literal["Model", "Dataset"]

# ---- images ------------------------------------------------------------------------------------

WORKDIRS: dict[str, str] = {"Model": "/model", "Dataset": "/dataset"}
SCRIPTS: dict[str, tuple[str, ...]] = {"Model": ("serve.sh", "train.sh", "notebook.sh"),
                                       "Dataset": ("load.sh", "notebook.sh")}
SAVED_DIR = "/model/saved"           # a model's artifacts, saved by its build; serve.sh loads them
TRAINED_DIR = "/model/trained"       # train.sh writes the trained model here
TRAINED_NAME = "trained"             # ... which becomes `COPY trained/ /model/saved/` of a new image
MODEL_LOGS = "/model/logs"
DATASET_LOGS = "/dataset/logs"
DATA_DIR = "/data"                   # LOAD_DATA_PATH and TRAIN_DATA_PATH are files in here

# ---- servers and notebooks ---------------------------------------------------------------------

SERVER_PORT = 8080
NOTEBOOK_PORT = 8888
DOCS_PATH = "/docs"                  # GET: the API documentation
GENERATE_PATH = "/generate"          # POST {"prompt", "max_new_tokens"} -> {"generation"}
READYZ_PATH = "/readyz"              # beyond the written contract: a server that offers it says when it is ready
NOTEBOOK_PATH = "/"

# ---- environment -------------------------------------------------------------------------------

LOAD_DATA_PATH = "LOAD_DATA_PATH"
TRAIN_DATA_PATH = "TRAIN_DATA_PATH"
TRAIN_DATA_LIMIT = "TRAIN_DATA_LIMIT"
TRAIN_BATCH_SIZE = "TRAIN_BATCH_SIZE"
TRAIN_EPOCHS = "TRAIN_EPOCHS"
DATASET_PATH = "DATASET_PATH"        # the contract's text names it for train.sh too: the same file
NOTEBOOK_TOKEN_ENV = "JUPYTER_TOKEN"             # the notebook's login token
SERVER_TOKEN_ENV = "SUBSTRATUS_SERVER_TOKEN"     # beyond the contract: a bearer token an exposed server requires
SECRET_ENV = frozenset({NOTEBOOK_TOKEN_ENV, SERVER_TOKEN_ENV})  # values that never appear in a pod spec


def load_env(filename: str) -> dict[str, str]:
    return {LOAD_DATA_PATH: f"{DATA_DIR}/{filename}"}


def train_env(filename: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The contract's TRAIN_* variables (and DATASET_PATH, which the contract's text also names)."""
    path = f"{DATA_DIR}/{filename}"
    return {TRAIN_DATA_PATH: path, DATASET_PATH: path, TRAIN_DATA_LIMIT: str(params["dataLimit"]),
            TRAIN_BATCH_SIZE: str(params["batchSize"]), TRAIN_EPOCHS: str(params["epochs"])}


# ---- mounts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountPoint:
    """Where a job sees one of its directories, and whether it may write there."""

    target: str
    read_only: bool = False


LOAD_MOUNTS: dict[str, MountPoint] = {"data": MountPoint(DATA_DIR), "logs": MountPoint(DATASET_LOGS)}
TRAIN_MOUNTS: dict[str, MountPoint] = {"data": MountPoint(DATA_DIR, read_only=True),
                                       "trained": MountPoint(TRAINED_DIR), "logs": MountPoint(MODEL_LOGS)}
NOTEBOOK_DATA = MountPoint(DATA_DIR, read_only=True)  # a dataset's notebook sees the loaded data here

# ---- networks ----------------------------------------------------------------------------------
# Which jobs get a network (issue 25). A loader usually downloads its data: it gets one (its own stack
# where the engine can: runtimes.engine.own_network_mode). A trainer reads the mounted data and
# /model/saved: it gets none, so it reaches no server, notebook or anything else (docs/security.md).
LOAD_NETWORK = True
TRAIN_NETWORK = False

# ---- readiness ---------------------------------------------------------------------------------

ABSENT = (404, 405)  # how a server says it has no such endpoint


@dataclass(frozen=True)
class HttpGet:
    """One GET a readiness probe sends. It passes on any status from 200 to 399 (what a kubelet's
    httpGet probe accepts); an `optional` one also passes when the server has no such path."""

    path: str
    port: int
    optional: bool = False

    def passes(self, status: Optional[int]) -> bool:
        if status is None:  # no answer at all
            return False
        return 200 <= status < 400 or (self.optional and status in ABSENT)


@dataclass(frozen=True)
class Readiness:
    """When a running server or notebook counts as ready: every check passes.

    Data, not code: the local backend sends the GETs itself (`local.probes`), the Kubernetes
    generators render the same value into the pod (`runtimes.kubernetes.workloads`): a single
    required check as the kubelet's own httpGet, anything else through the readiness helper
    (`runtimes.readiness`) that answers the kubelet by sending these GETs inside the pod.
    `timeout_seconds` bounds each GET."""

    checks: tuple[HttpGet, ...]
    timeout_seconds: float = 2.0

    def ready(self, statuses: Sequence[Optional[int]]) -> bool:
        """`statuses`: the answer to each check in order (None: no answer)."""
        return len(statuses) == len(self.checks) and all(c.passes(s) for c, s in zip(self.checks, statuses))

    @property
    def native(self) -> Optional[HttpGet]:
        """The check a kubelet can send itself, when the rule is exactly one required GET."""
        only = self.checks[0] if len(self.checks) == 1 else None
        return only if only is not None and not only.optional else None

    def describe(self) -> str:
        """For messages: `GET /docs and GET /readyz (if offered) on port 8080`."""
        ports = {c.port for c in self.checks}
        gets = " and ".join(f"GET {c.path}" + (" (if offered)" if c.optional else "") for c in self.checks)
        return gets + (f" on port {ports.pop()}" if len(ports) == 1 else "")


# A server is ready when its documentation answers and, where it offers /readyz, that answers too:
# the contract's own endpoint says the web server is up, /readyz (which the example images answer
# with 503 while the model loads) says it can serve requests.
SERVER_READINESS = Readiness((HttpGet(DOCS_PATH, SERVER_PORT), HttpGet(READYZ_PATH, SERVER_PORT, optional=True)))
# The contract promises a notebook server on its port and nothing about its paths; Jupyter answers
# its root with a redirect to the login page or the lab (3xx), which passes.
NOTEBOOK_READINESS = Readiness((HttpGet(NOTEBOOK_PATH, NOTEBOOK_PORT),))
READINESS: dict[str, Readiness] = {"server": SERVER_READINESS, "notebook": NOTEBOOK_READINESS}
PORTS: dict[str, int] = {"server": SERVER_PORT, "notebook": NOTEBOOK_PORT}  # by container role


# ---- the clauses -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clause:
    """One promise of the contract, as `sub verify` checks it and a ContractViolation names it.

    `contract` quotes the sentence of the written contract it rests on ("" for a check beyond the
    written contract: a failure there is a warning in `sub verify`)."""

    id: str
    title: str
    group: str                       # for `sub verify --skip`; "image" clauses always run
    needs: tuple[str, ...] = ()
    fix: str = ""                    # what the image author should change when it fails
    contract: str = ""

    @property
    def written(self) -> bool:
        return bool(self.contract)


SCRIPT_CLAUSES = {"serve.sh": "script.serve", "train.sh": "script.train", "notebook.sh": "script.notebook",
                  "load.sh": "script.load"}
GROUPS = ("serve", "schemathesis", "train", "notebook", "load")  # what `sub verify --skip` accepts


def _script(script: str) -> Clause:
    return Clause(SCRIPT_CLAUSES[script], f"{script} is on PATH and executable", "image", ("build",),
                  fix=f"COPY {script} into a PATH directory (e.g. /usr/local/bin) and make it executable (chmod +x)",
                  contract=f"Scripts must be located in $PATH: {script}.")


def _image(kind: Kind) -> list[Clause]:
    workdir = WORKDIRS[kind]
    return [
        Clause("dockerfile", "the source has a Dockerfile", "image",
               fix="put a Dockerfile at the root of the source directory (or point --path at the directory holding it)",
               contract="The repo should contain a Dockerfile."),
        Clause("build", "the image builds", "image", ("dockerfile",),
               fix="fix the Dockerfile or the build context; the build log tail is above",
               contract=f"As a part of building the Dockerfile: model artifacts should be saved into {SAVED_DIR}/."
               if kind == "Model" else "The repo should contain a Dockerfile."),
        Clause("workdir", f"WORKDIR is {workdir}", "image", ("build",),
               fix=f"add `WORKDIR {workdir}` to the Dockerfile",
               contract=f"Workspace directory should be {workdir}/ (i.e. WORKDIR {workdir})."),
        *[_script(s) for s in SCRIPTS[kind]],
    ]


def _notebook() -> Clause:
    return Clause("notebook.listen", f"notebook.sh answers HTTP on port {NOTEBOOK_PORT}", "notebook",
                  ("script.notebook",),
                  fix=f"make notebook.sh start Jupyter (or another server) on 0.0.0.0:{NOTEBOOK_PORT}, e.g. "
                      f"`jupyter lab --ip=0.0.0.0 --port={NOTEBOOK_PORT} --no-browser`",
                  contract=f"notebook.sh: Should start a Jupyter Lab/Notebook environment. Should serve on port "
                           f"{NOTEBOOK_PORT}.")


def _model() -> list[Clause]:
    return [
        *_image("Model"),
        Clause("saved", f"{SAVED_DIR} is not empty after the build", "image", ("build",),
               fix=f"save the model artifacts into {SAVED_DIR}/ during the build (a RUN step that downloads or "
                   "creates them, or COPY them in)",
               contract=f"Model artifacts (i.e. model.pt, tokenizer.pt) should be saved into {SAVED_DIR}/."),
        Clause("serve.listen", f"serve.sh answers HTTP on port {SERVER_PORT}", "serve", ("script.serve",),
               fix=f"make serve.sh start a web server on 0.0.0.0:{SERVER_PORT} (not 127.0.0.1, not another port) "
                   "and keep it in the foreground",
               contract=f"serve.sh: Run a webserver on port {SERVER_PORT}."),
        Clause("serve.docs", f"GET {DOCS_PATH} answers 200", "serve", ("serve.listen",),
               fix=f"serve API documentation at GET {DOCS_PATH} with status 200",
               contract=f"serve.sh endpoints: GET {DOCS_PATH} - Serves API Documentation."),
        Clause("serve.generate", f"POST {GENERATE_PATH} answers {{\"generation\": prompt + completion}}", "serve",
               ("serve.listen",),
               fix=f"POST {GENERATE_PATH} must accept {{\"prompt\": str, \"max_new_tokens\": int}} and answer 200 "
                   "with a JSON object whose \"generation\" string starts with the prompt",
               contract=f"POST {GENERATE_PATH} accepts {{\"prompt\": ..., \"max_new_tokens\": 100}} and responds "
                        "with {\"generation\": \"<your-prompt><completion>\"}."),
        Clause("serve.bad-body", f"POST {GENERATE_PATH} with a malformed body answers 4xx", "serve", ("serve.listen",),
               fix="validate the request body and answer 400 or 422 when it is not valid JSON; a 5xx or a dropped "
                   "connection means the server crashed on bad input"),
        Clause("serve.fuzz", "schemathesis finds no 5xx from /openapi.json", "schemathesis", ("serve.listen",),
               fix="fix the requests schemathesis reported: no input described by /openapi.json may cause a 5xx"),
        Clause("train.run", "train.sh exits 0 with the TRAIN_* variables", "train", ("script.train",),
               fix=f"make train.sh read {TRAIN_DATA_PATH} (JSONL), {TRAIN_DATA_LIMIT}, {TRAIN_BATCH_SIZE} and "
                   f"{TRAIN_EPOCHS} and exit 0 when training succeeds; the log tail shows where it stopped",
               contract="The following parameters are communicated through environment variables when train.sh "
                        "is called and should be taken into account."),
        Clause("train.logs", "train.sh writes logs to stdout/stderr", "train", ("train.run",),
               fix="print progress (epochs, batches, loss) to stdout or stderr",
               contract=f"train.sh: Writes logs to STDOUT/STDERR and optionally to {MODEL_LOGS}/."),
        Clause("train.output", f"train.sh leaves the trained model in {TRAINED_DIR}", "train", ("train.run",),
               fix=f"save the trained model files into {TRAINED_DIR}/ (that directory is what the control plane "
                   f"copies into the new image's {SAVED_DIR}/)",
               contract=f"train.sh: Saves new trained model to {TRAINED_DIR}/."),
        Clause("train.image", f"an image built from {TRAINED_DIR} serves {GENERATE_PATH}", "train",
               ("train.output", "serve.generate"),
               fix=f"serve.sh must load the model from {SAVED_DIR}/, and train.sh must write everything serve.sh "
                   f"needs there into {TRAINED_DIR}/",
               contract=f"{TRAINED_DIR}/ will be copied into the new container's {SAVED_DIR}/ directory; serve.sh "
                        f"loads model from disk ({SAVED_DIR}/)."),
        _notebook(),
    ]


def _dataset() -> list[Clause]:
    return [
        *_image("Dataset"),
        Clause("load.run", f"load.sh exits 0 with {LOAD_DATA_PATH} set", "load", ("script.load",),
               fix="make load.sh exit 0 when loading succeeds; the log tail shows where it stopped",
               contract=f"load.sh: Saves data to disk in the file path specified by the {LOAD_DATA_PATH} environment "
                        "variable."),
        Clause("load.logs", "load.sh writes logs to stdout/stderr", "load", ("load.run",),
               fix="print progress (what is downloaded or converted, how many records) to stdout or stderr",
               contract=f"load.sh: Writes logs to STDOUT/STDERR and optionally to {DATASET_LOGS}/."),
        Clause("load.output", f"load.sh writes a non-empty file at exactly ${LOAD_DATA_PATH}", "load", ("load.run",),
               fix=f"write the data to the path in the {LOAD_DATA_PATH} environment variable (it is "
                   f"{DATA_DIR}/<filename>); do not pick the file name yourself",
               contract=f"load.sh: Saves data to disk in the file path specified by the {LOAD_DATA_PATH} environment "
                        "variable."),
        _notebook(),
    ]


CLAUSES: dict[str, tuple[Clause, ...]] = {"Model": tuple(_model()), "Dataset": tuple(_dataset())}


def clauses_for(kind: str) -> list[Clause]:
    """The ordered clauses of `kind` ("Model" or "Dataset")."""
    try:
        return list(CLAUSES[kind])
    except KeyError:
        raise ValueError(f"no contract for kind {kind!r}") from None


def clause(kind: str, clause_id: str) -> Clause:
    return next(c for c in CLAUSES[kind] if c.id == clause_id)
