"""The README's verification snippet, run exactly as printed against real deliveries: it accepts Tollgate's
signature, refuses anything else, and de-duplicates a redelivered event by its id."""

from __future__ import annotations

import json

import pytest

from accounts.keys import mint_key
from tests.webhooks.conftest import load_snippet, readme_snippet

pytestmark = pytest.mark.django_db


def test_the_snippet_is_about_ten_lines_of_standard_library_python():
    code = [line for line in readme_snippet().splitlines() if line.strip() and not line.strip().startswith("#")]
    imports = [line for line in code if line.startswith("import")]
    assert imports == ["import hashlib, hmac, json, time"]
    assert len(code) <= 20


def test_the_snippet_accepts_a_delivery_once_and_skips_its_redelivery(
    team, owner, hook, receiver, django_capture_on_commit_callbacks, drive
):
    _, secret = hook
    receiver.answer(500, 200)  # the first attempt "fails" after the receiver handled it: Tollgate sends it again
    with django_capture_on_commit_callbacks(execute=True):
        mint_key(team=team, name="ci", created_by=owner)
    drive(advance=100)
    first, second = receiver.requests

    snippet = load_snippet()  # one receiver process: one `seen` set
    event = snippet["receive"](first.body, first.header("Tollgate-Signature"), secret)
    assert event == json.loads(first.body) and event["type"] == "key.created"
    assert snippet["receive"](second.body, second.header("Tollgate-Signature"), secret) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, sig, secret: (body + b" ", sig, secret),  # body changed after signing
        lambda body, sig, secret: (body, sig, secret + "x"),  # another secret
        lambda body, sig, secret: (body, sig.split(",")[0], secret),  # no v1
        lambda body, sig, secret: (body, "v1=" + sig.split("v1=")[1], secret),  # no timestamp
        lambda body, sig, secret: (body, sig.replace("t=", "t=1", 1), secret),  # another timestamp
        lambda body, sig, secret: (body, "garbage", secret),
    ],
)
def test_the_snippet_refuses_anything_tollgate_did_not_sign(
    team, owner, hook, receiver, django_capture_on_commit_callbacks, tamper
):
    _, secret = hook
    with django_capture_on_commit_callbacks(execute=True):
        mint_key(team=team, name="ci", created_by=owner)
    [got] = receiver.requests
    body, signature, key = tamper(got.body, got.header("Tollgate-Signature"), secret)
    with pytest.raises(ValueError, match="Tollgate-Signature"):
        load_snippet()["receive"](body, signature, key)
