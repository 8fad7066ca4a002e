"""`sub examples DIR`: write the example manifests and contract images to a folder.

Registered in the `sub` group by `cli.main`. Lets an installed `sub` (no
repository) run the examples: the shell pipeline at once, the ML demo after
`sub images build`. The folder's entries go to stdout, next steps to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click


@click.command("examples", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty (example files are overwritten).")
@click.option("--busybox", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Static busybox for the shell images [default: /bin/busybox when it is static; otherwise "
                   "the images take it from docker.io/library/busybox at build time].")
def examples(directory: Path, force: bool, busybox: Optional[Path]) -> None:
    """Write example manifests and contract images to DIRECTORY.

    \b
    DIRECTORY/shell   dataset, model, fine-tune, server and notebook in busybox +
                      shell images: needs only a container engine
    DIRECTORY/demo    the Shakespeare dataset and a tiny GPT-2, fine-tuned and
                      served: needs `sub images build` first
    DIRECTORY/gemma   Gemma 3 270M (opt-in, heavy)

    \b
    Examples:
      sub examples ~/substratus-examples
      sub apply -f ~/substratus-examples/shell --wait
    """
    from substratus.bundle import examples as writer

    done = writer.write(directory.expanduser().absolute(), busybox=busybox, force=force)
    for entry in done.entries:
        click.echo(str(done.dest / entry))
    if done.busybox == writer.BUSYBOX_IMAGE:
        click.echo(f"note: no static busybox here; the shell images take it from {done.busybox} at build time "
                   "(or pass --busybox PATH)", err=True)
    click.echo(f"next:\n  sub apply -f {done.dest / 'shell'} --wait     # about half a minute\n"
               f"  sub images build && sub apply -f {done.dest / 'demo'} --wait   # the ML demo", err=True)
