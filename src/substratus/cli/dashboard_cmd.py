"""`sub dashboard`: print the web dashboard's URL with a one-time login code.

The browser never sees the API token: the CLI (which can read the token)
asks the control plane for a code that is good for one login within two
minutes and prints the link on stdout, alone, so scripts can take it
(`xdg-open "$(sub dashboard)"`). Imported only when run (`cli.lazy`).
"""

from __future__ import annotations

import sys
import webbrowser
from typing import Any, Optional

import click

from substratus.cli.backend import require_local
from substratus.cli.client import Client, home_dir
from substratus.errors import ControlPlaneError


def dashboard_base(endpoint: Optional[dict[str, Any]]) -> str:
    """The control plane's TCP address for browsers, from its endpoint file."""
    ep = endpoint or {}
    for key in ("dashboardUrl", "url"):
        value = ep.get(key)
        if isinstance(value, str) and value.startswith("http://"):
            return value.rstrip("/")
    if ep.get("port"):
        return f"http://127.0.0.1:{int(ep['port'])}"
    raise ControlPlaneError("the control plane's endpoint file names no TCP port for the dashboard",
                            hint="restart it: `sub down && sub up`")


@click.command()
@click.option("--open", "open_browser", is_flag=True, help="Also open the link in a web browser.")
def dashboard(open_browser: bool) -> None:
    """Print the dashboard's URL with a one-time login code (one login, within two minutes).

    \b
    The dashboard lists every object live (ready, reason, progress, age) and
    shows each one's spec, conditions, log tail, loss curve and lineage; a
    server's page has a playground. Run it again for a new code.

    \b
    Examples:
      sub dashboard
      sub dashboard --open
    """
    require_local("dashboard")
    c = Client(home_dir())
    answer = c.request("POST", "/api/v1/dashboard/codes")
    url = dashboard_base(c.endpoint()) + str(answer["path"])
    click.echo(url)
    click.echo(f"one-time login link, valid for {answer['expiresIn']}s; `sub dashboard` prints a new one",
               err=True)
    if open_browser and not webbrowser.open(url):
        click.echo("could not start a browser here: open the link above yourself", err=True)
        sys.exit(1)
