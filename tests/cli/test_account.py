"""`tollgate login / logout / whoami`: the key is verified before it is stored, the file is the owner's
alone, profiles stay apart, the environment overrides the file, and bad keys exit 2."""

from __future__ import annotations

import json
import os
import stat
import tomllib

import pytest

from accounts import keyformat
from accounts.keys import mint_key
from tests.cli.conftest import ALL_SCOPES

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_reads_the_key_from_stdin_and_stores_it_readable_only_by_its_owner(
    cli, live, acme, acme_key, config_file
):
    done = cli("login", "--base-url", f"{live.url}/v1/", input=acme_key + "\n", preexec_fn=lambda: os.umask(0))

    assert done.returncode == 0, done.stderr
    assert acme.public_id in done.stdout
    assert acme_key not in done.stdout + done.stderr  # the secret is never echoed
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600  # even with a umask of 0
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    stored = tomllib.loads(config_file.read_text())
    assert stored == {"profiles": {"default": {"base_url": live.url, "api_key": acme_key}}}


def test_whoami_prints_the_keys_team_mode_scopes_and_limits(cli, acme, logged_in):
    people = cli("whoami")
    assert people.returncode == 0, people.stderr
    for expected in (acme.public_id, "live", "keys:write", "billing:read", "Requests/min", "60", "100,000"):
        assert expected in people.stdout

    scripts = json.loads(cli("whoami", "--json").stdout)
    assert scripts["key"]["team"]["id"] == acme.public_id
    assert scripts["key"]["mode"] == "live"
    assert set(scripts["key"]["scopes"]) == set(ALL_SCOPES)
    assert scripts["key"]["limits"]["rpm_limit"] == 60


def test_a_refused_key_exits_2_with_the_servers_message_and_stores_nothing(cli, live, acme, config_file):
    unknown = keyformat.generate("live")  # well formed, but no such key
    done = cli("login", "--base-url", live.url, input=unknown + "\n")
    assert done.returncode == 2
    assert "invalid_api_key" in done.stderr
    assert not config_file.exists()

    malformed = cli("login", "--base-url", live.url, input="tg_live_typo\n")
    assert malformed.returncode == 2
    assert "Malformed API key" in malformed.stderr
    assert not config_file.exists()


def test_login_without_a_key_is_a_usage_error(cli, live, config_file):
    done = cli("login", "--base-url", live.url, input="")
    assert done.returncode == 1
    assert "No API key given" in done.stderr
    assert not config_file.exists()


def test_a_base_url_that_is_not_http_is_refused_before_any_request(cli, acme_key, config_file):
    done = cli("login", "--base-url", "ftp://example.test", input=acme_key)
    assert done.returncode == 1
    assert "Invalid base URL" in done.stderr
    assert not config_file.exists()


def test_logout_forgets_the_key_and_later_commands_exit_2(cli, logged_in, config_file):
    assert cli("logout").returncode == 0
    assert not config_file.exists()

    done = cli("balance")
    assert done.returncode == 2
    assert "Not logged in" in done.stderr


def test_profiles_stay_apart_and_the_environment_overrides_the_file(
    cli, live, acme, logged_in, other_team, outsider, config_file
):
    evil_key = mint_key(team=other_team, name="evil", created_by=outsider).plaintext
    assert cli("login", "--profile", "evil", "--base-url", live.url, input=evil_key).returncode == 0

    def team_of(*args: str, env=None) -> str:
        done = cli("whoami", "--json", *args, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["key"]["team"]["id"]

    assert team_of() == acme.public_id
    assert team_of("--profile", "evil") == other_team.public_id
    assert team_of(env={"TOLLGATE_PROFILE": "evil"}) == other_team.public_id
    assert team_of(env={"TOLLGATE_API_KEY": evil_key}) == other_team.public_id
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    # Logging out of one profile leaves the other.
    assert cli("logout", "--profile", "evil").returncode == 0
    assert team_of() == acme.public_id
    assert cli("whoami", "--profile", "evil").returncode == 2


def test_the_base_url_comes_from_the_environment_when_set(cli, live, acme, acme_key, home):
    done = cli("balance", "--json", env={"TOLLGATE_API_KEY": acme_key, "TOLLGATE_BASE_URL": f"{live.url}/v1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["credits"] == 10


def test_an_unreachable_server_is_a_clear_error_not_a_traceback(cli, acme_key):
    from tests.live_server import closed_port

    done = cli("balance", env={"TOLLGATE_API_KEY": acme_key, "TOLLGATE_BASE_URL": f"http://127.0.0.1:{closed_port()}"})
    assert done.returncode == 1
    assert "Cannot reach" in done.stderr
    assert "Traceback" not in done.stderr
