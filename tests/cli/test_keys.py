"""`tollgate keys list|create|rotate|revoke` through the management API with a keys:write key: the secret is
printed once, alone on stdout; rotation and revocation take effect; another team's key is out of reach."""

from __future__ import annotations

import json
import tomllib

import pytest

from accounts.keys import mint_key
from accounts.models import ApiKey

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _works(cli, live, secret: str) -> int:
    return cli("balance", env={"TOLLGATE_API_KEY": secret, "TOLLGATE_BASE_URL": live.url}).returncode


def test_a_key_is_created_rotated_and_revoked_round_trip(cli, live, acme, logged_in):
    created = cli("keys", "create", "ci-bot", "--scopes", "billing:read,inference", "--spend-cap", "2.5")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n"  # only the secret: KEY=$(tollgate keys create …) works
    assert secret.startswith("tg_live_")
    assert "shown once" in created.stderr
    row = ApiKey.objects.get(team=acme, scopes=["billing:read", "inference"])
    assert row.monthly_spend_cap_nusd == 2_500_000_000
    assert secret not in json.dumps(list(ApiKey.objects.values()), default=str)  # only its hash is stored
    assert _works(cli, live, secret) == 0

    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert {k["id"]: k["status"] for k in listed["data"]}[row.public_id] == "active"
    assert all("key" not in k for k in listed["data"])  # a list never carries a secret
    assert row.public_id in cli("keys", "list").stdout

    rotated = cli("keys", "rotate", row.public_id, "--grace", "0", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new_secret = json.loads(rotated.stdout)["key"]
    assert new_secret != secret
    assert _works(cli, live, new_secret) == 0
    assert _works(cli, live, secret) == 2  # no grace: the old secret stopped at once

    revoked = cli("keys", "revoke", row.public_id, "--yes")
    assert revoked.returncode == 0, revoked.stderr
    assert _works(cli, live, new_secret) == 2
    listed = json.loads(cli("keys", "list", "--json").stdout)
    assert {k["id"]: k["status"] for k in listed["data"]}[row.public_id] == "revoked"


def test_a_created_key_keeps_the_name_it_was_given(cli, acme, logged_in):
    created = json.loads(cli("keys", "create", "ci-bot", "--json").stdout)
    assert created["name"] == "ci-bot"


def test_a_rotation_keeps_the_old_secret_for_the_grace_window(cli, live, acme, logged_in, owner):
    other = mint_key(team=acme, name="deploy", created_by=owner)
    rotated = cli("keys", "rotate", other.key.public_id, "--grace", "1h")
    assert rotated.returncode == 0, rotated.stderr
    assert "keeps working until" in rotated.stderr
    assert _works(cli, live, other.plaintext) == 0
    assert _works(cli, live, rotated.stdout.strip()) == 0


def test_rotating_the_profiles_own_key_saves_the_new_secret(cli, live, acme, logged_in, config_file):
    own = ApiKey.objects.get(team=acme, name="laptop")
    done = cli("keys", "rotate", own.public_id, "--grace", "0")
    assert done.returncode == 0, done.stderr

    stored = tomllib.loads(config_file.read_text())["profiles"]["default"]["api_key"]
    assert stored == done.stdout.strip() != logged_in
    assert cli("whoami").returncode == 0  # still logged in, with the new secret


def test_revoking_from_a_script_needs_yes(cli, acme, logged_in, owner):
    other = mint_key(team=acme, name="keep me", created_by=owner).key
    done = cli("keys", "revoke", other.public_id)
    assert done.returncode == 1
    assert "--yes" in done.stderr
    other.refresh_from_db()
    assert other.revoked_at is None


def test_without_keys_write_the_management_commands_exit_2(cli, live, acme, owner):
    narrow = mint_key(team=acme, name="narrow", created_by=owner)  # the default scopes, without keys:write
    done = cli("keys", "list", env={"TOLLGATE_API_KEY": narrow.plaintext, "TOLLGATE_BASE_URL": live.url})
    assert done.returncode == 2
    assert "keys:write" in done.stderr


def test_another_teams_key_cannot_touch_ours(cli, live, acme, logged_in, other_team, outsider):
    ours = ApiKey.objects.get(team=acme, name="laptop")
    evil = mint_key(team=other_team, name="evil", scopes=["keys:write"], created_by=outsider).plaintext
    env = {"TOLLGATE_API_KEY": evil, "TOLLGATE_BASE_URL": live.url}

    for action in (("rotate", ours.public_id), ("revoke", ours.public_id, "--yes")):
        done = cli("keys", *action, env=env)
        assert done.returncode == 1
        assert "not_found" in done.stderr
    listed = json.loads(cli("keys", "list", "--json", env=env).stdout)
    assert ours.public_id not in {k["id"] for k in listed["data"]}
    ours.refresh_from_db()
    assert ours.revoked_at is None and ours.rotated_at is None
