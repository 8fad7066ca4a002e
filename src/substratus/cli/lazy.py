"""A click group whose subcommands are imported only when they are run.

`sub apply` on an unchanged manifest should answer in well under a quarter
of a second, so `sub` must not import what it does not use: `verify` pulls in
the whole conformance checker, `kube` a Kubernetes client. Each lazy command
is named by "module:attribute" with a one-line help for `sub --help`.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: Optional[dict[str, tuple[str, str]]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})  # name -> ("module:attribute", short help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            target, _ = self.lazy[cmd_name]
            module, attr = target.split(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = self.commands.get(name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
