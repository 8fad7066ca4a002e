"""`sub`: apply manifests, watch them become ready, read status and logs.

Only results go to stdout (so `-o json` pipes cleanly); progress, logs of
waiting and errors go to stderr. Exit codes: 0 ok, 1 failed, 2 usage, 130
interrupted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Optional

import click

from substratus import __version__
from substratus.cli import output
from substratus.cli.client import Client, home_dir
from substratus.cli.lazy import LazyGroup
from substratus.cli.wait import ref, wait_for
from substratus.errors import SubstratusError, ValidationError
from substratus.resources.documents import Document, check_duplicates, read_path
from substratus.resources.kinds import canonical_kind

# Commands imported only when run (`sub apply` must not pay for them): name -> (module:attr, help).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("substratus.cli.verify_cmd:verify", "Check a model or dataset image against the container contract."),
    "dashboard": ("substratus.cli.dashboard_cmd:dashboard", "Print the web dashboard's URL with a one-time login code."),
}

FORMATS = click.Choice(["table", "json", "yaml"])


def err(msg: str) -> None:
    click.echo(msg, err=True)


class SubGroup(LazyGroup):
    """Turns our errors into a clear message and exit 1, Ctrl-C into 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SubstratusError as e:
            err(click.style("error: ", fg="red", bold=True) + str(e) if sys.stderr.isatty() else f"error: {e}")
            sys.exit(1)
        except KeyboardInterrupt:
            err("interrupted")
            sys.exit(130)


@click.group(cls=SubGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sub")
def cli() -> None:
    """Substratus: run ML datasets, models, servers and notebooks from container contracts.

    \b
    Manifests (apiVersion: substratus.ai/v1) describe Dataset, Model,
    ModelServer (or Server) and Notebook objects. `sub apply -f` hands them to
    the control plane, which builds images from git or local sources, runs
    load.sh / train.sh / serve.sh / notebook.sh, and reports status.

    \b
    The embedded control plane starts on first use; state lives in
    $SUBSTRATUS_HOME (default ~/.substratus). SUBSTRATUS_ENGINE picks
    podman or docker.
    """


def client() -> Client:
    return Client(home_dir())


def read_documents(paths: tuple[str, ...]) -> list[Document]:
    """The documents of every -f, dirs resolved; validation happens in the control plane."""
    docs: list[Document] = []
    for p in paths:
        docs += read_path(Path(p))
    if not docs:
        raise ValidationError([("", "no objects found in the given manifests")])
    check_duplicates(docs)
    return docs


def where(err: ValidationError, docs: list[Document]) -> ValidationError:
    """The control plane names documents `objects[i]`; say which file (and document) that was."""
    def place(field: str) -> str:
        m = re.match(r"objects\[(\d+)\](?:: )?(.*)", field, re.S)
        if not m or int(m.group(1)) >= len(docs):
            return field
        rest = m.group(2)
        return f"{docs[int(m.group(1))].source}: {rest}" if rest else docs[int(m.group(1))].source
    return ValidationError([(place(f), msg) for f, msg in err.problems], hint=err.hint)


def doc_keys(docs: list[Document]) -> list[tuple[str, str, str]]:
    return [k for k in (d.key() for d in docs) if k is not None]


@cli.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True, type=click.Path(),
              help="Manifest file or directory (repeatable).")
@click.option("--wait", is_flag=True, help="Wait until every applied object is ready; exit 1 if one fails.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Seconds to wait with --wait.")
@click.option("-o", "--output", "fmt", type=FORMATS, default="table", help="Output format of the result.")
def apply(paths: tuple[str, ...], wait: bool, timeout: float, fmt: str) -> None:
    """Create or update objects from manifests.

    Unchanged objects are left alone; changed ones re-run exactly what depends
    on the change. An invalid manifest changes nothing.

    \b
    Examples:
      sub apply -f examples/demo/
      sub apply -f model.yaml --wait --timeout 600
    """
    docs = read_documents(paths)
    c = client()
    try:
        results = c.apply([d.data for d in docs])
    except ValidationError as e:
        raise where(e, docs) from None
    if fmt == "table":
        for r in results:
            click.echo(f"{r['kind'].lower()}/{r['name']} {r['result']}")
    else:
        click.echo(output.dump(results, fmt))
    if wait:
        keys = set(doc_keys(docs))
        verdict = wait_for(c.watch(timeout=timeout), keys, timeout)
        if verdict.failed or verdict.pending:
            for o in verdict.failed:
                report_failure(o, "failed")
            if not verdict.failed:
                err(f"timed out after {timeout:.0f}s; not ready yet:")
                for o in verdict.pending:
                    report_failure(o, "not ready")
            sys.exit(1)
        err(f"all {len(keys)} objects ready")


def report_failure(o: dict[str, Any], what: str) -> None:
    cond = output.ready_condition(o)
    err(f"{ref(o)} {what}: {cond.get('reason', 'Pending')}")
    for line in (cond.get("message") or "").splitlines():
        err(f"    {line}")
    err(f"  to debug, run: sub describe {o['kind'].lower()} {o['metadata']['name']}   "
        f"and: sub logs {o['kind'].lower()} {o['metadata']['name']}")


@cli.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace (default: all for lists, 'default' for one).")
@click.option("-o", "--output", "fmt", type=FORMATS, default="table", help="Output format.")
def get(kind: Optional[str], name: Optional[str], namespace: Optional[str], fmt: str) -> None:
    """List objects, or show one.

    \b
    Examples:
      sub get
      sub get models
      sub get server tiny-gpt -o json
    """
    c = client()
    if name:
        obj = c.get(canonical_kind(kind or ""), namespace or "default", name)
        click.echo(output.table([obj]) if fmt == "table" else output.dump(obj, fmt))
        return
    items = c.list(canonical_kind(kind) if kind else None, namespace)
    click.echo(output.table(items) if fmt == "table" else output.dump({"items": items}, fmt))


@cli.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default")
def describe(kind: str, name: str, namespace: str) -> None:
    """Show one object in detail: spec, conditions with messages, containers, log files."""
    click.echo(output.describe(client().describe(canonical_kind(kind), namespace, name)))


@cli.command()
@click.argument("kind")
@click.argument("name")
@click.option("-n", "--namespace", default="default")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming the running container's output.")
def logs(kind: str, name: str, namespace: str, follow: bool) -> None:
    """Print an object's logs: build log, load/train job logs, logs/ directories, container output."""
    for line in client().logs(canonical_kind(kind), namespace, name, follow):
        click.echo(line)


@cli.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(), help="Delete the objects in these manifests.")
@click.option("-n", "--namespace", default="default")
def delete(kind: Optional[str], name: Optional[str], paths: tuple[str, ...], namespace: str) -> None:
    """Delete objects and stop and remove the containers they run.

    \b
    Examples:
      sub delete server tiny-gpt
      sub delete -f examples/demo/
    """
    if paths and (kind or name):
        raise click.UsageError("give either KIND NAME or -f FILE, not both")
    c = client()
    if paths:
        targets = list(reversed(doc_keys(read_documents(paths))))
    elif kind and name:
        targets = [(canonical_kind(kind), namespace, name)]
    else:
        raise click.UsageError("give KIND NAME, or -f FILE")
    if not paths:
        k, ns, n = targets[0]
        r = c.delete(k, ns, n)
        click.echo(f"{k.lower()}/{n} deleted" + (f" ({len(r['containers'])} containers removed)"
                                                  if r["containers"] else ""))
        return
    results = c.delete_many(targets)
    for r in results:
        if r["result"] == "not found":
            err(f"{r['kind'].lower()}/{r['name']}: not found in namespace {r['namespace']!r}")
            continue
        click.echo(f"{r['kind'].lower()}/{r['name']} deleted" + (f" ({len(r['containers'])} containers removed)"
                                                                  if r["containers"] else ""))
    if all(r["result"] == "not found" for r in results):
        sys.exit(1)


@cli.command()
def up() -> None:
    """Start the embedded control plane (it also starts on demand)."""
    ep = client().start()
    click.echo(ep.get("url", ""))


@cli.command()
def down() -> None:
    """Stop the embedded control plane. Running containers keep running and are adopted at the next start."""
    stopped = client().stop()
    err("control plane stopped" if stopped else "control plane was not running")


def main() -> None:
    cli(prog_name="sub")


if __name__ == "__main__":
    main()
