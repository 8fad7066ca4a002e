"""`sub completion bash|zsh|fish`: print the script that makes Tab complete `sub`.

The script is click's: on each Tab the shell runs `sub` with `_SUB_COMPLETE`
set, and click answers from the command tree, including our callbacks for
kinds and object names (`cli.complete`) and field paths (`cli.explain`).
"""

from __future__ import annotations

import sys

import click
from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

SHELLS: dict[str, type[ShellComplete]] = {"bash": BashComplete, "zsh": ZshComplete, "fish": FishComplete}
COMPLETE_VAR = "_SUB_COMPLETE"
INSTALL = {
    "bash": "echo 'source <(sub completion bash)' >> ~/.bashrc",
    "zsh": "echo 'source <(sub completion zsh)' >> ~/.zshrc",
    "fish": "sub completion fish > ~/.config/fish/completions/sub.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(sorted(SHELLS)))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print a completion script for SHELL; completes commands, options, kinds, object names and fields.

    \b
    Install (then open a new shell):
      bash:  echo 'source <(sub completion bash)' >> ~/.bashrc
      zsh:   echo 'source <(sub completion zsh)' >> ~/.zshrc
      fish:  sub completion fish > ~/.config/fish/completions/sub.fish

    Object names come from the control plane when it runs; without it, names
    are not offered (nothing is started for a Tab).
    """
    root = ctx.find_root().command
    script = SHELLS[shell](root, {}, "sub", COMPLETE_VAR).source()
    click.echo(script)
    if sys.stdout.isatty():
        click.echo(f"# to install: {INSTALL[shell]}", err=True)
