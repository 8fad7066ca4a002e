"""Checks that run a contract job to completion: train.sh and load.sh.

Each job runs once with the environment variables and bind mounts the control
plane gives it (data under /data, output and logs on temporary host
directories), and the results of that one run feed several clauses: exit
status, logs, output files.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from substratus import contract
from substratus.build import conformance
from substratus.errors import tail
from substratus.runtimes.base import Completed, RunSpec, Runtime
from substratus.verify.clauses import Outcome
from substratus.verify.options import Options
from substratus.verify.sample import FILENAME as SAMPLE_NAME
from substratus.verify.sample import sample_jsonl


@dataclass
class JobRun:
    """What one job run left behind, for the clauses that judge it."""

    script: str
    env: dict[str, str]
    done: Completed
    out_dir: Path                  # host side of /model/trained or /data
    logs_dir: Path
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size

    def command(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"{env} {self.script}"


def list_files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _describe(files: dict[str, int], limit: int = 8) -> str:
    shown = [f"{name} ({size} bytes)" for name, size in list(files.items())[:limit]]
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return ", ".join(shown) + more


def prepare_training_data(options: Options, data_dir: Path) -> str:
    """Put the training data in data_dir; returns its file name (the part after /data/)."""
    if options.data_file is not None:
        shutil.copyfile(options.data_file, data_dir / options.data_file.name)
        return options.data_file.name
    (data_dir / SAMPLE_NAME).write_text(sample_jsonl())
    return SAMPLE_NAME


def run_train(runtime: Runtime, image: str, options: Options, data_dir: Path, trained: Path,
              logs: Path) -> JobRun:
    filename = prepare_training_data(options, data_dir)
    env = contract.train_env(filename, {"dataLimit": options.data_limit, "batchSize": options.batch_size,
                                        "epochs": options.epochs})
    spec = RunSpec(name="", image=image, command=["train.sh"], env=env,
                   mounts=conformance.train_mounts(str(data_dir), str(trained), str(logs)),
                   network=contract.TRAIN_NETWORK)
    done = runtime.run_once(spec, timeout=options.train_timeout)
    return JobRun("train.sh", env, done, trained, logs, list_files(trained))


def run_load(runtime: Runtime, image: str, options: Options, data_dir: Path, logs: Path,
             filename: str) -> JobRun:
    env = contract.load_env(filename)
    spec = RunSpec(name="", image=image, command=["load.sh"], env=env,
                   mounts=conformance.load_mounts(str(data_dir), str(logs)), network=contract.LOAD_NETWORK)
    done = runtime.run_once(spec, timeout=options.load_timeout)
    return JobRun("load.sh", env, done, data_dir, logs, list_files(data_dir))


def judge_exit(job: JobRun) -> Outcome:
    code = job.done.exit_code
    evidence = f"ran `{job.command()}`: exit {code}"
    if code == 0:
        return Outcome(True, evidence)
    if code == 124:
        return Outcome(False, evidence + " (timed out)", log_tail=tail(job.done.output, 25),
                       fix=f"{job.script} took longer than the timeout: make it faster on small data, or raise "
                           f"the timeout (--{'train' if job.script == 'train.sh' else 'load'}-timeout)")
    return Outcome(False, evidence, log_tail=tail(job.done.output, 25))


def judge_logs(job: JobRun) -> Outcome:
    lines = [ln for ln in job.done.output.splitlines() if ln.strip()]
    logged = list_files(job.logs_dir)
    extra = f"; log files: {_describe(logged)}" if logged else ""
    if not lines:
        return Outcome(False, f"{job.script} printed nothing to stdout/stderr{extra}")
    return Outcome(True, f"{len(lines)} lines on stdout/stderr, the last: {lines[-1][:160]!r}{extra}")


def judge_trained(job: JobRun) -> Outcome:
    if not job.files:
        return Outcome(False, f"{job.script} exited 0 but the bind-mounted /model/trained is empty "
                              f"(did it write somewhere else?)", log_tail=tail(job.done.output, 15))
    return Outcome(True, f"/model/trained holds {_describe(job.files)}")


def judge_loaded(job: JobRun, filename: str) -> Outcome:
    want = f"/data/{filename}"
    size = job.files.get(filename)
    others = {k: v for k, v in job.files.items() if k != filename}
    if size is None:
        where = f"; /data holds only {_describe(others)}: those do not count" if others else \
            "; /data is empty"
        return Outcome(False, f"nothing at LOAD_DATA_PATH={want}{where}", log_tail=tail(job.done.output, 15))
    if size == 0:
        return Outcome(False, f"{want} exists but is empty (0 bytes)",
                       fix="write the loaded records into $LOAD_DATA_PATH; an empty file means nothing was "
                           "loaded (check the log tail)", log_tail=tail(job.done.output, 15))
    extra = f" (also in /data: {_describe(others)})" if others else ""
    return Outcome(True, f"{want} holds {size} bytes{extra}")
