"""`sub`: apply manifests, watch them become ready, read status and logs.

Only results go to stdout (so `-o json` pipes cleanly); progress, logs of
waiting and errors go to stderr. Exit codes: 0 ok, 1 failed, 2 usage, 130
interrupted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import click

from substratus import __version__
from substratus.cli import complete, output
from substratus.cli.backend import Backend, make_client
from substratus.cli.lazy import LazyGroup
from substratus.errors import SubstratusError, ValidationError
from substratus.resources.kinds import canonical_kind
from substratus.resources.objectkey import ObjectKey

if TYPE_CHECKING:  # imported where used: `sub get` reads no manifests (YAML) and waits for nothing
    from substratus.resources.documents import Document

# Commands imported only when run (`sub apply` must not pay for them): name -> (module:attr, help).
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "verify": ("substratus.cli.verify_cmd:verify", "Check a model or dataset image against the container contract."),
    "images": ("substratus.cli.images_cmd:images", "Build the base images the example images build FROM."),
    "examples": ("substratus.cli.examples_cmd:examples", "Write example manifests and contract images to a folder."),
    "dashboard": ("substratus.cli.dashboard_cmd:dashboard", "Print the web dashboard's URL with a one-time login code."),
    "kube": ("substratus.cli.kube_cmd:kube", "Run Substratus on a Kubernetes cluster: sub kube install [--dry-run]."),
    "operator": ("substratus.cli.kube_cmd:operator_cmd", "Run the Kubernetes operator (python -m substratus.kube)."),
    "explain": ("substratus.cli.explain:explain", "Describe a kind or a field: type, default, allowed values."),
    "completion": ("substratus.cli.completion:completion", "Print a shell completion script (bash, zsh, fish)."),
    "notebook": ("substratus.cli.notebook:notebook",
                 "Build a directory, open a notebook on it, and sync files both ways until Ctrl-C."),
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
@click.option("--context", "kube_context", metavar="NAME",
              help="Work on the custom resources of this kubeconfig context's cluster instead of the local "
                   "control plane (also: SUBSTRATUS_BACKEND=kubernetes for the current context).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig file for --context (default "
              "$KUBECONFIG).")
@click.pass_context
def cli(ctx: click.Context, kube_context: Optional[str], kubeconfig: Optional[str]) -> None:
    """Substratus: run ML datasets, models, servers and notebooks from container contracts.

    \b
    Manifests (apiVersion: substratus.ai/v1) describe Dataset, Model,
    ModelServer (or Server) and Notebook objects. `sub apply -f` hands them to
    the control plane, which builds images from git or local sources, runs
    load.sh / train.sh / serve.sh / notebook.sh, and reports status.

    \b
    The embedded control plane starts on first use; state lives in
    $SUBSTRATUS_HOME (default ~/.substratus). SUBSTRATUS_ENGINE picks
    podman or docker. With --context (or SUBSTRATUS_BACKEND=kubernetes) the
    same commands work on a cluster's custom resources (docs/kubernetes.md).
    """
    ctx.obj = {"context": kube_context, "kubeconfig": kubeconfig}


def client() -> Backend:
    """The local control plane, or a cluster's (`--context`, SUBSTRATUS_BACKEND): cli.backend."""
    opts = click.get_current_context().find_root().obj or {}
    return make_client(opts.get("context"), opts.get("kubeconfig"))


def read_documents(paths: tuple[str, ...]) -> list[Document]:
    """The documents of every -f (`-` is standard input, its `dir` sources relative to the current
    directory), dirs resolved; validation happens in the control plane."""
    from substratus.resources.documents import check_duplicates, documents_from_text, read_path

    if paths.count("-") > 1:
        raise click.UsageError("-f - (standard input) can be given only once")
    docs: list[Document] = []
    for p in paths:
        if p == "-":
            docs += documents_from_text(sys.stdin.read(), "<stdin>", Path.cwd())
        else:
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


def doc_keys(docs: list[Document]) -> list[ObjectKey]:
    return [k for k in (d.key() for d in docs) if k is not None]


@cli.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True, type=click.Path(allow_dash=True),
              help="Manifest file or directory (repeatable); - reads standard input.")
@click.option("--dry-run", "dry_run", type=click.Choice(["none", "client", "server"]), default="none",
              is_flag=False, flag_value="client", show_default=True,
              help="client: validate here, print what would be sent, contact nothing. server: the control plane "
                   "also resolves references and sources; nothing is stored or run.")
@click.option("--wait", is_flag=True, help="Wait until every applied object is ready; exit 1 if one fails.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              help="Seconds to wait with --wait.")
@click.option("-o", "--output", "fmt", type=FORMATS, default="table", help="Output format of the result.")
def apply(paths: tuple[str, ...], dry_run: str, wait: bool, timeout: float, fmt: str) -> None:
    """Create or update objects from manifests.

    Unchanged objects are left alone; changed ones re-run exactly what depends
    on the change. An invalid manifest changes nothing.

    \b
    Examples:
      sub apply -f examples/demo/
      sub apply -f model.yaml --wait --timeout 600
      cat model.yaml | sub apply -f -
      sub apply -f examples/demo/ --dry-run=server
    """
    if wait and dry_run != "none":
        raise click.UsageError("--wait cannot be used with --dry-run: nothing would run")
    docs = read_documents(paths)
    if dry_run == "client":
        from substratus.cli.dryrun import client_dry_run

        click.echo(client_dry_run(docs, fmt))
        return
    c = client()
    try:
        results = c.apply_dry_run([d.data for d in docs]) if dry_run == "server" else c.apply([d.data for d in docs])
    except ValidationError as e:
        raise where(e, docs) from None
    if fmt == "table":
        for r in results:
            click.echo(f"{r['kind'].lower()}/{r['name']} {r['result']}")
    else:
        click.echo(output.dump(results, fmt))
    if wait:
        from substratus.cli.wait import wait_for

        keys = set(doc_keys(docs))
        verdict = wait_for(c.watch(timeout=timeout), keys, timeout, view=progress_view(keys))
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
    from substratus.cli.wait import ref

    cond = output.ready_condition(o)
    err(f"{ref(o)} {what}: {cond.get('reason', 'Pending')}")
    for line in (cond.get("message") or "").splitlines():
        err(f"    {line}")
    err(f"  to debug, run: sub describe {o['kind'].lower()} {o['metadata']['name']}   "
        f"and: sub logs {o['kind'].lower()} {o['metadata']['name']}")


def progress_view(keys: set[ObjectKey]) -> Any:
    """Live progress bars (rich) on a terminal; plain lines, one per change, otherwise."""
    if not sys.stderr.isatty():
        return None
    from substratus.cli.progress import RichView

    return RichView(keys)


SELECTOR_HELP = "Label selector, e.g. 'app=web', 'tier!=db', 'env in (a,b)', 'env notin (a)', 'gpu', '!legacy'."


def check_selector(selector: str) -> str:
    """Parse here first: a typo is a usage error before anything is contacted."""
    from substratus.resources.selectors import parse as parse_selector  # only when -l is given

    return str(parse_selector(selector, field="--selector"))


@cli.command()
@click.argument("kind", required=False, shell_complete=complete.kinds)
@click.argument("name", required=False, shell_complete=complete.names)
@click.option("-n", "--namespace", default=None, help="Namespace (default: all for lists, 'default' for one).")
@click.option("-l", "--selector", default="", help=SELECTOR_HELP)
@click.option("-w", "--watch", is_flag=True, help="After the list, print each change as it happens, until Ctrl-C.")
@click.option("--output-watch-events", "with_events", is_flag=True,
              help="With -w and -o json|yaml: print {type, object} events (ADDED, MODIFIED, DELETED).")
@click.option("-o", "--output", "fmt", type=FORMATS, default="table", help="Output format.")
def get(kind: Optional[str], name: Optional[str], namespace: Optional[str], selector: str, watch: bool,
        with_events: bool, fmt: str) -> None:
    """List objects, or show one.

    \b
    Examples:
      sub get
      sub get models
      sub get server tiny-gpt -o json
      sub get -l app=demo
      sub get models -w
    """
    if name and selector:
        raise click.UsageError("give a NAME or a --selector, not both")
    if name and not kind:
        raise click.UsageError("give the KIND before the NAME, e.g. `sub get model tiny-gpt`")
    selector = check_selector(selector) if selector else ""
    k = canonical_kind(kind) if kind else None
    c = client()
    if watch:
        from substratus.cli.watch_cmd import watch_objects

        watch_objects(c, k, namespace or ("default" if name else None), name, selector, fmt, with_events)
        return
    if name:
        obj = c.get(k or "", namespace or "default", name)
        click.echo(output.table([obj]) if fmt == "table" else output.dump(obj, fmt))
        return
    items = c.list_selected(k, namespace, selector)[0] if selector else c.list(k, namespace)
    click.echo(output.table(items) if fmt == "table" else output.dump({"items": items}, fmt))


@cli.command()
@click.argument("kind", shell_complete=complete.kinds)
@click.argument("name", shell_complete=complete.names)
@click.option("-n", "--namespace", default="default")
def describe(kind: str, name: str, namespace: str) -> None:
    """Show one object in detail: spec, conditions, progress, lineage, containers, log files.

    Conditions come with their messages; progress is the last a load or
    training job reported; lineage (of a trained model) names the base model,
    the dataset and its digest, and the training parameters."""
    click.echo(output.describe(client().describe(canonical_kind(kind), namespace, name)))


@cli.command()
@click.argument("kind", shell_complete=complete.kinds)
@click.argument("name", shell_complete=complete.names)
@click.option("-n", "--namespace", default="default")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming the running container's output.")
def logs(kind: str, name: str, namespace: str, follow: bool) -> None:
    """Print an object's logs: build log, load/train job logs, logs/ directories, container output."""
    for line in client().logs(canonical_kind(kind), namespace, name, follow):
        click.echo(line)


@cli.command()
@click.argument("kind", required=False, shell_complete=complete.kinds)
@click.argument("name", required=False, shell_complete=complete.names)
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(allow_dash=True),
              help="Delete the objects in these manifests; - reads standard input.")
@click.option("-l", "--selector", default="", help=SELECTOR_HELP + " Deletes every object it selects.")
@click.option("-n", "--namespace", default=None,
              help="Namespace (default: 'default' for KIND NAME; every namespace for -l, as `sub get -l` lists).")
def delete(kind: Optional[str], name: Optional[str], paths: tuple[str, ...], selector: str,
           namespace: Optional[str]) -> None:
    """Delete objects and stop and remove the containers they run.

    \b
    Examples:
      sub delete server tiny-gpt
      sub delete -f examples/demo/
      sub delete -l app=demo
      sub delete models -l 'stage in (scratch,test)'
    """
    ways = sum(bool(w) for w in (paths, selector, name))
    if ways != 1:
        raise click.UsageError("give exactly one of: KIND NAME, -f FILE, or -l SELECTOR (with an optional KIND)")
    if paths and kind:
        raise click.UsageError("give either KIND NAME or -f FILE, not both")
    if name and not kind:
        raise click.UsageError("give KIND NAME, e.g. `sub delete model tiny-gpt`")
    c = client()
    if name and kind:
        k = canonical_kind(kind)
        r = c.delete(k, namespace or "default", name)
        click.echo(f"{k.lower()}/{name} deleted" + (f" ({len(r['containers'])} containers removed)"
                                                     if r["containers"] else ""))
        return
    if selector:
        results = c.delete_selected(canonical_kind(kind) if kind else None, namespace, check_selector(selector))
        if not results:
            err(f"No objects match the selector {selector!r}.")
            return
    else:
        results = c.delete_many(list(reversed(doc_keys(read_documents(paths)))))
    report_deleted(results)


def report_deleted(results: list[dict[str, Any]]) -> None:
    """One line per deleted object; exit 1 when none of the named objects existed."""
    for r in results:
        if r["result"] == "not found":
            err(f"{r['kind'].lower()}/{r['name']}: not found in namespace {r['namespace']!r}")
            continue
        ns = "" if r["namespace"] == "default" else f"{r['namespace']}/"
        click.echo(f"{r['kind'].lower()}/{ns}{r['name']} deleted" + (f" ({len(r['containers'])} containers removed)"
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
