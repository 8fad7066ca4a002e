"""`sub dashboard` (cli/dashboard_cmd.py): where the link points, and that `sub` stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from substratus.cli.dashboard_cmd import dashboard_base
from substratus.errors import ControlPlaneError


def test_the_link_uses_the_tcp_address_from_the_endpoint_file() -> None:
    assert dashboard_base({"pid": 1, "port": 4321, "url": "http://127.0.0.1:4321"}) == "http://127.0.0.1:4321"
    assert dashboard_base({"port": 4321, "socket": "/run/x.sock"}) == "http://127.0.0.1:4321"
    assert dashboard_base({"dashboardUrl": "http://127.0.0.1:9/", "url": "unix:///x"}) == "http://127.0.0.1:9"
    with pytest.raises(ControlPlaneError):
        dashboard_base({"socket": "/run/x.sock"})
    with pytest.raises(ControlPlaneError):
        dashboard_base(None)


def test_sub_lists_the_command_without_importing_it_or_the_dashboard() -> None:
    code = ("import sys; from click.testing import CliRunner; from substratus.cli.main import cli; "
            "out = CliRunner().invoke(cli, ['--help']).output; "
            "print('dashboard' in out, 'substratus.cli.dashboard_cmd' in sys.modules, "
            "'substratus.api.dashboard' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]
