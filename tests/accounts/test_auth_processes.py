"""A revocation is honoured by another OS process within one second (PostgreSQL, real commits)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from accounts.keys import KeyActor, mint_key, revoke_key
from accounts.services import create_team
from tests.conftest import make_user, requires_postgres

ROOT = Path(__file__).resolve().parents[2]

# A second server process: authenticates the key on every line it reads, answers "ok" or the code.
WORKER = """
import os, sys
import django
django.setup()
from accounts.auth import authenticate
from config.errors import ApiError
key = os.environ.pop("TG_KEY")
print("ready", flush=True)
for line in sys.stdin:
    try:
        authenticate(key, client_ip="127.0.0.1", scope="inference")
        print("ok", flush=True)
    except ApiError as exc:
        print(exc.code, flush=True)
"""


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_revocation_is_seen_by_a_second_process_within_one_second():
    owner = make_user("olivia.owner@acme.test")
    team = create_team(name="Acme", slug="acme", owner=owner)
    minted = mint_key(team=team, name="ci")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "TOLLGATE_TESTING": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "TG_KEY": minted.plaintext,
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:

        def ask() -> str:
            worker.stdin.write("auth\n")
            worker.stdin.flush()
            return worker.stdout.readline().strip()

        assert worker.stdout.readline().strip() == "ready"
        assert ask() == "ok"  # the other process now holds the key in its cache

        revoke_key(minted.key, actor=KeyActor.for_user(owner, team))  # committed (transactional test)
        revoked_at = time.monotonic()
        answers = []
        while time.monotonic() - revoked_at < 1.1:
            answers.append(ask())
            if answers[-1] != "ok":
                break
            time.sleep(0.05)  # polling interval of the observer, not time logic
        assert answers[-1] == "invalid_api_key", answers
        assert time.monotonic() - revoked_at <= 1.1
    finally:
        worker.stdin.close()
        worker.wait(timeout=10)
