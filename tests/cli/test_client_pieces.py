"""The CLI's parts that need no server: it is a pure API client (no Django, no Tollgate app), it is
installed as a console script, it writes money exactly as the server's formatter does, and it parses
base URLs and server-sent events like the server writes them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import money
from tests.cli.conftest import SCRIPT
from tollgate_cli import config, render
from tollgate_cli.client import sse_data

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_imports_neither_django_nor_any_tollgate_app():
    probe = (
        "import sys, tollgate_cli.main, tollgate_cli.chat, tollgate_cli.keys, tollgate_cli.images; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'django', 'config', 'accounts', 'billing', 'gateway', 'dashboard', 'ninja', 'rest_framework'}); "
        "print(','.join(bad))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": "/usr/bin"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_console_script_is_declared_and_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["tollgate"] == "tollgate_cli.main:main"
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("tollgate ")


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_amounts_read_exactly_as_the_servers_formatter_writes_them(amount_nusd):
    as_sent = Decimal(money.exact(amount_nusd))  # what a client parses from the exact JSON number
    assert render.usd(as_sent) == money.usd(amount_nusd)
    assert render.exact(as_sent) == money.exact(amount_nusd)
    assert Decimal(render.dumps({"x": as_sent}).split(":")[1].strip(" \n}")) == as_sent


def test_whole_dollars_arrive_as_integers_and_are_still_money():
    assert render.usd(5) == "$5.00"
    assert render.usd(Decimal("0.0000001")) == "$0.0000001"  # never scientific notation
    assert render.dumps(Decimal("0.0000001")) == "0.0000001"


@pytest.mark.parametrize(
    ("given_url", "root"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
        ("https://gw.example.com/tollgate/v1/", "https://gw.example.com/tollgate"),
    ],
)
def test_a_base_url_is_kept_as_the_installations_root(given_url, root):
    assert config.normalize_base_url(given_url) == root


@pytest.mark.parametrize("bad", ["127.0.0.1:8000", "ftp://host", "http://", "http://host/?x=1"])
def test_a_base_url_that_cannot_work_is_refused(bad):
    with pytest.raises(config.ConfigError):
        config.normalize_base_url(bad)


def test_server_sent_events_are_read_like_the_server_writes_them():
    lines = [": keep-alive", "", 'data: {"a": 1}', "", "data: line one", "data: line two", "", "data: [DONE]", ""]
    assert list(sse_data(lines)) == ['{"a": 1}', "line one\nline two", "[DONE]"]


def test_a_damaged_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / ".config" / "tollgate" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("[profiles.default\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.resolve(None, env={"HOME": str(tmp_path)})
