"""`tollgate images generate`: start an image job, poll it with a progress indicator on a terminal,
download the PNG, against the image endpoints (`POST /v1/images`, `GET /v1/images/{id}`)."""

from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest

from billing.models import Receipt
from tests.cli.conftest import SCRIPT, cli_env
from tests.cli.test_chat import _read_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def image_model(cli, acme, logged_in) -> str:
    models = json.loads(cli("models", "--json").stdout)["data"]
    return next(m["id"] for m in models if m.get("type") == "image")


def test_generate_waits_for_the_job_and_writes_the_png(cli, acme, image_model, tmp_path):
    target = tmp_path / "cat.png"
    done = cli("images", "generate", "-m", image_model, "a cat in a hat", "-o", str(target))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target)
    assert target.read_bytes().startswith(PNG)
    assert "succeeded" in done.stderr
    assert Receipt.objects.filter(team=acme, model_requested=image_model).exists()


def test_without_o_the_file_is_named_after_the_job(cli, acme, image_model, tmp_path):
    done = cli("images", "generate", "-m", image_model, "--json", "a lighthouse", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["id"].startswith("img_")
    assert job["files"][0]["path"] == f"{job['id']}.png"
    assert (tmp_path / f"{job['id']}.png").read_bytes().startswith(PNG)
    # The job can be fetched again later by its id.
    again = cli("images", "get", job["id"], "-o", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / f"{job['id']}.png").read_bytes()


def test_a_terminal_shows_progress_while_polling(home, acme, image_model, tmp_path):
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(SCRIPT), "images", "generate", "-m", image_model, "a slow sunset", "-o", str(tmp_path / "s.png")],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=cli_env(home),
        close_fds=True,
    )
    os.close(terminal)
    screen = bytearray()
    try:
        text = _read_until(controller, screen, b"s.png", 1, timeout=60)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert "img_" in text  # the spinner names the job and its status


def test_a_bad_request_exits_1_and_an_empty_wallet_exits_3(cli, live, acme, image_model, other_team, outsider):
    from accounts.keys import mint_key

    bad = cli("images", "generate", "-m", image_model, "x", "--size", "3x3")
    assert bad.returncode == 1
    assert "size" in bad.stderr

    broke = mint_key(team=other_team, name="broke", created_by=outsider).plaintext
    done = cli("images", "generate", "-m", image_model, "x", env={"TOLLGATE_API_KEY": broke})
    assert done.returncode == 3
    assert "insufficient_balance" in done.stderr
