"""`sub verify model|dataset SOURCE`: check an image against the container contract.

Registered in the `sub` group by `cli.main` (`cli.add_command(verify)`); also
usable on its own. The checklist (or `-o json`) goes to stdout; build logs and
progress go to stderr. A clause the written contract states is a FAIL when
broken; a check beyond it (a malformed body answered 4xx, fuzzing) is a WARN
unless `--strict`. Exit codes: 0 nothing failed (warnings allowed), 1 a
clause failed (or the engine is missing), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import click

from substratus import contract
from substratus.errors import SubstratusError
from substratus.verify import GROUPS, KINDS, Options, Target, exit_code, render_text, to_dict
from substratus.verify import verify as run_verify


def _skip_groups(value: str) -> frozenset[str]:
    groups = frozenset(g.strip().lower() for g in value.split(",") if g.strip())
    unknown = sorted(groups - set(GROUPS))
    if unknown:
        raise click.BadParameter(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}",
                                 param_hint="--skip")
    return groups


def _target(kind: str, source: Optional[str], image: Optional[str], path: str, branch: str) -> Target:
    if image and source:
        raise click.UsageError("give either SOURCE or --image, not both")
    if not image and not source:
        raise click.UsageError("give a SOURCE (a directory or a git URL) or --image NAME")
    if image and (path or branch):
        raise click.UsageError("--path and --branch describe a git SOURCE; they do not go with --image")
    if source and not (path or branch) and "://" not in source and not source.startswith("git@") \
            and not source.endswith(".git") and not Path(source).is_dir():
        raise click.BadParameter(f"{source!r} is not a directory (nor a git URL)", param_hint="SOURCE")
    return Target(kind=KINDS[kind], source=source, path=path, branch=branch, image=image)


HELP = """Check that a model or dataset image keeps the Substratus container contract.

    \b
    SOURCE is a directory holding a Dockerfile, or a git URL (with --path and
    --branch as in manifests); --image NAME checks an image that exists already.
    Builds when needed, then checks each clause (WORKDIR, scripts on PATH,
    serve.sh on {server} with {docs} and {generate}, train.sh, load.sh, notebook.sh on
    {notebook}) and prints a checklist with evidence and, for failures, what to change.

    \b
    Examples:
      sub verify model ./my-model
      sub verify dataset https://github.com/org/repo --path datasets/squad --branch main
      sub verify model --image localhost/my-model:1 --skip train,notebook -o json
    """.format(server=contract.SERVER_PORT, docs=contract.DOCS_PATH, generate=contract.GENERATE_PATH,
               notebook=contract.NOTEBOOK_PORT)


@click.command("verify", help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("kind", type=click.Choice(list(KINDS), case_sensitive=False))
@click.argument("source", required=False)
@click.option("--image", help="Verify this existing image instead of building SOURCE.")
@click.option("--path", default="", help="Directory inside the git repository that holds the Dockerfile.")
@click.option("--branch", default="", help="Git branch (default: the repository's default branch).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Checklist for people, or the same as JSON.")
@click.option("--strict", is_flag=True,
              help="Count the checks beyond the written contract (bad bodies, fuzzing) as failures, not warnings.")
@click.option("--skip", "skip", default="", metavar="GROUPS",
              help=f"Comma-separated groups not to check: {', '.join(GROUPS)}.")
@click.option("--serve-timeout", type=click.FloatRange(1), default=120, show_default=True,
              help=f"Seconds serve.sh has to answer on {contract.SERVER_PORT}.")
@click.option("--notebook-timeout", type=click.FloatRange(1), default=120, show_default=True,
              help=f"Seconds notebook.sh has to answer on {contract.NOTEBOOK_PORT}.")
@click.option("--train-timeout", type=click.FloatRange(1), default=900, show_default=True)
@click.option("--load-timeout", type=click.FloatRange(1), default=900, show_default=True)
@click.option("--request-timeout", type=click.FloatRange(1), default=120, show_default=True,
              help="Seconds one HTTP request (e.g. POST /generate) may take.")
@click.option("--fuzz-timeout", type=click.FloatRange(1), default=60, show_default=True,
              help="Wall-clock limit of the schemathesis run.")
@click.option("--fuzz-examples", type=click.IntRange(1), default=10, show_default=True,
              help="schemathesis examples per API operation.")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL training data for train.sh (default: a small built-in sample).")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="TRAIN_EPOCHS.")
@click.option("--batch-size", type=click.IntRange(1), default=2, show_default=True, help="TRAIN_BATCH_SIZE.")
@click.option("--data-limit", type=click.IntRange(1), default=16, show_default=True, help="TRAIN_DATA_LIMIT.")
@click.option("--prompt", default="Shall I compare thee", show_default=True, help="Prompt sent to /generate.")
@click.option("--max-new-tokens", type=click.IntRange(0), default=8, show_default=True)
@click.option("--rebuild", is_flag=True, help="Build even when an image of this exact source exists.")
@click.option("--keep-image/--remove-image", default=True, show_default=True,
              help="Keep the image built from SOURCE (reused by the next run on the same source).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or build log on stderr.")
def verify(kind: str, source: Optional[str], image: Optional[str], path: str, branch: str, fmt: str, skip: str,
           serve_timeout: float, notebook_timeout: float, train_timeout: float, load_timeout: float,
           request_timeout: float, fuzz_timeout: float, fuzz_examples: int, data_file: Optional[Path],
           epochs: int, batch_size: int, data_limit: int, prompt: str, max_new_tokens: int, rebuild: bool,
           keep_image: bool, quiet: bool, strict: bool) -> None:
    """`sub verify` (the help people see is HELP, which names the contract's ports)."""
    kind = kind.lower()
    target = _target(kind, source, image, path, branch)
    groups = _skip_groups(skip)
    if data_file is not None and kind != "model":
        raise click.UsageError("--data is training data for a model's train.sh; a dataset has none")
    options = Options(skip=groups, serve_timeout=serve_timeout, notebook_timeout=notebook_timeout,
                      train_timeout=train_timeout, load_timeout=load_timeout, request_timeout=request_timeout,
                      fuzz_timeout=fuzz_timeout, fuzz_examples=fuzz_examples,
                      data_file=data_file.resolve() if data_file else None, epochs=epochs, batch_size=batch_size,
                      data_limit=data_limit, prompt=prompt, max_new_tokens=max_new_tokens, rebuild=rebuild,
                      keep_image=keep_image, build_log=not quiet, strict=strict)

    def progress(line: str) -> None:
        if not quiet:
            click.echo(line, err=True)

    try:
        from substratus.runtimes.engine import EngineRuntime, detect_engine

        runtime = EngineRuntime(detect_engine(os.environ.get("SUBSTRATUS_ENGINE")))
        report = run_verify(runtime, target, options, progress=progress)
    except SubstratusError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    if fmt == "json":
        click.echo(json.dumps(to_dict(report), indent=2))
    else:
        click.echo(render_text(report, color=sys.stdout.isatty()), nl=False)
    sys.exit(exit_code(report))


if __name__ == "__main__":  # `python -m substratus.cli.verify_cmd` before the lead registers it
    verify()
