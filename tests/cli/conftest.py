"""The `tollgate` console script, run for real (a subprocess of the installed entry point) against the
shared live server (`live`, tests/live_server.py), with HOME in a temporary folder so its config file
lands there. `cli(...)` runs it; `logged_in` has logged in from stdin already."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.keys import mint_key
from accounts.models import Scope
from billing.money import NUSD_PER_USD
from billing.services import grant_credit
from billing.settlement import unsettled
from tests.gateway.conftest import reset_gateway_state

# `make install` (pip install -e .) puts the console script beside the interpreter.
SCRIPT = Path(sys.executable).with_name("tollgate")
ALL_SCOPES = [s.value for s in Scope]
TIMEOUT = 60


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    settings.GATEWAY_RETRY_BACKOFF_SECONDS = 0
    reset_gateway_state()
    yield
    reset_gateway_state()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Run]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_") and k != "XDG_CONFIG_HOME"}
    env.update(HOME=str(home), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def config_file(home) -> Path:
    return home / ".config" / "tollgate" / "config.toml"


@pytest.fixture
def cli(home) -> Cli:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: `make install` installs the console script"

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None, **popen) -> Run:
        done = subprocess.run(
            [str(SCRIPT), *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=cli_env(home, **(env or {})),
            timeout=TIMEOUT,
            **popen,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def acme(live, team):
    call_command("seed_catalog", quiet=True)
    grant_credit(team, amount_nusd=10 * NUSD_PER_USD, reason="cli credit")
    return team


@pytest.fixture
def acme_key(acme, owner) -> str:
    """A key that may do everything, the management API included."""
    return mint_key(team=acme, name="laptop", scopes=ALL_SCOPES, created_by=owner).plaintext


@pytest.fixture
def logged_in(cli, live, acme_key) -> str:
    done = cli("login", "--base-url", f"{live.url}/v1", input=acme_key + "\n")
    assert done.returncode == 0, done.stderr
    return acme_key


def settled() -> None:
    assert unsettled.wait(timeout=10), "settlements still pending after 10 s"
