"""Signed delivery to a real HTTP receiver on 127.0.0.1: the signature verifies with the shown secret (checked
with the README's own snippet), rotation signs with both secrets during the grace window, failures are retried
with backoff until the endpoint is disabled after 3 days, hangs are cut at 10 s, redirects are not followed,
and the delivery log records every attempt."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from accounts.keys import KeyActor, mint_key, revoke_key
from accounts.models import AuditLog
from tests.live_server import closed_port
from tests.webhooks.conftest import add_endpoint, verifies
from tests.webhooks.receiver import Answer
from webhooks import delivery, services
from webhooks.models import Delivery, DeliveryStatus, Endpoint, Event

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a change as if its transaction committed: after-commit work (the first delivery) runs at the end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def new_key(team, owner, committed):
    """Make a change that emits key.created, committed; returns the MintedKey."""

    def make(name: str = "ci"):
        with committed():
            return mint_key(team=team, name=name, created_by=owner)

    return make


def log_of(endpoint) -> list[Delivery]:
    return list(Delivery.objects.filter(endpoint=endpoint).select_related("event").order_by("id"))


def v1_count(request) -> int:
    return sum(1 for part in request.header("Tollgate-Signature").split(",") if part.startswith("v1="))


# --- signature and headers ---------------------------------------------------------------------------------------


def test_a_delivery_verifies_with_the_secret_shown_at_creation(hook, receiver, new_key):
    endpoint, secret = hook
    minted = new_key()

    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    assert verifies(got, secret)
    assert not verifies(got, "whsec_" + "x" * 43)
    event = json.loads(got.body)
    stored = Event.objects.get(public_id=event["id"])
    assert got.body == stored.body.encode()  # the bytes signed are the bytes stored and listed by /v1/events
    assert (event["object"], event["type"], event["data"]["object"]["id"]) == (
        "event",
        "key.created",
        minted.key.public_id,
    )
    assert got.header("Tollgate-Event-Id") == event["id"]
    assert got.header("Tollgate-Event-Type") == "key.created"
    assert got.header("Tollgate-Delivery-Attempt") == "1"
    assert got.header("Content-Type") == "application/json"
    assert got.header("User-Agent").startswith("Tollgate-Webhooks/")
    assert v1_count(got) == 1
    assert minted.plaintext not in got.body.decode() and minted.key.secret_hash not in got.body.decode()
    [row] = log_of(endpoint)
    assert (row.status, row.attempt, row.http_status, row.response_body) == ("succeeded", 1, 200, "ok")
    assert row.latency_ms is not None and row.finished_at is not None


def test_during_a_rotation_grace_both_secrets_verify_and_only_the_new_one_after(team, owner, hook, receiver, new_key):
    endpoint, old_secret = hook
    actor = services.Actor.for_user(owner, team.public_id)
    with time_machine.travel(START, tick=False) as clock:
        new_secret = services.rotate_secret(endpoint, actor=actor, grace_seconds=3600).secret
        assert new_secret != old_secret and new_secret.startswith("whsec_")
        new_key("during grace")
        during = receiver.requests[-1]
        assert v1_count(during) == 2
        assert verifies(during, new_secret) and verifies(during, old_secret)

        clock.shift(timedelta(seconds=3601))
        new_key("after grace")
        after = receiver.requests[-1]
        assert v1_count(after) == 1
        assert verifies(after, new_secret) and not verifies(after, old_secret)


def test_a_rotation_without_grace_signs_with_the_new_secret_only(team, owner, hook, receiver, new_key):
    endpoint, old_secret = hook
    new_secret = services.rotate_secret(endpoint, actor=services.Actor.for_user(owner, team.public_id), grace_seconds=0)
    new_key()
    assert verifies(receiver.requests[-1], new_secret.secret) and not verifies(receiver.requests[-1], old_secret)


def test_an_old_signature_is_refused_by_the_snippet_after_five_minutes(hook, receiver, new_key):
    _, secret = hook
    with time_machine.travel(START, tick=False) as clock:
        new_key()
        clock.shift(timedelta(seconds=301))
        assert not verifies(receiver.requests[0], secret)  # a replayed delivery is refused


# --- retries ------------------------------------------------------------------------------------------------------


def test_a_receiver_answering_500_then_200_gets_the_event_twice_with_the_same_id(hook, receiver, new_key, drive):
    endpoint, secret = hook
    receiver.answer(500, 200)
    new_key()

    first = log_of(endpoint)
    assert [(d.attempt, d.status, d.http_status) for d in first] == [(1, "failed", 500), (2, "pending", None)]
    assert Endpoint.objects.get(pk=endpoint.pk).failing_since is not None
    assert drive(advance=59) == 0  # the first retry waits at least a minute
    assert drive(advance=60 * 1.2 + 1) == 1

    one, two = receiver.requests
    assert one.header("Tollgate-Event-Id") == two.header("Tollgate-Event-Id")
    assert (one.header("Tollgate-Delivery-Attempt"), two.header("Tollgate-Delivery-Attempt")) == ("1", "2")
    assert one.body == two.body and verifies(two, secret)
    assert [(d.attempt, d.status, d.http_status) for d in log_of(endpoint)] == [
        (1, "failed", 500),
        (2, "succeeded", 200),
    ]
    assert Endpoint.objects.get(pk=endpoint.pk).failing_since is None  # a success ends the run of failures


def test_ten_attempts_over_three_days_then_the_endpoint_is_disabled_and_the_owners_emailed(
    team, owner, admin_user, hook, receiver, new_key, drive
):
    endpoint, _ = hook
    receiver.answer(*[503] * 10)
    with time_machine.travel(START, tick=False) as clock:
        new_key()
        for delay in delivery.RETRY_DELAYS:
            wait = delay * (1 + delivery.JITTER) + 1
            assert Endpoint.objects.get(pk=endpoint.pk).enabled
            clock.shift(timedelta(seconds=wait))
            assert drive(advance=wait) == 1

        rows = log_of(endpoint)
        assert [d.attempt for d in rows] == list(range(1, 11))
        assert all(d.status == "failed" and d.http_status == 503 for d in rows)
        assert [r.header("Tollgate-Delivery-Attempt") for r in receiver.requests] == [str(n) for n in range(1, 11)]
        for before, after, delay in zip(rows, rows[1:], delivery.RETRY_DELAYS, strict=False):
            waited = (after.scheduled_at - before.finished_at).total_seconds()
            assert delay <= waited <= delay * (1 + delivery.JITTER)  # exponential backoff with jitter
        assert rows[-1].finished_at - rows[0].started_at >= timedelta(days=3)

        endpoint.refresh_from_db()
        assert not endpoint.enabled and "3 days" in endpoint.disabled_reason
        assert AuditLog.objects.filter(action="webhook.disabled", target=endpoint.public_id).exists()
        [email] = mail.outbox
        assert email.to == [owner.email]  # owners, not admins
        assert endpoint.url in email.body and "/v1/events" in email.body

        new_key("while disabled")  # stored, not sent
        assert len(receiver.requests) == 10 and drive(advance=10**6) == 0
        assert Event.objects.filter(type="key.created").count() == 2


def test_a_receiver_that_hangs_is_cut_at_ten_seconds_and_retried(hook, receiver, new_key, drive):
    endpoint, _ = hook
    receiver.answer(Answer(hang=True), 200)
    started = time.monotonic()
    new_key()
    took = time.monotonic() - started

    assert 9.5 <= took < 12
    failed = log_of(endpoint)[0]
    assert failed.status == "failed" and failed.http_status is None and "within 10 s" in failed.error
    assert 9_500 <= failed.latency_ms < 12_000
    assert drive(advance=100) == 1
    assert log_of(endpoint)[-1].status == "succeeded" and len(receiver.requests) == 2


def test_the_ten_seconds_bound_the_whole_attempt_not_each_read(hook, receiver, new_key, monkeypatch):
    """A receiver that sends its answer a byte at a time never lets a per-read timeout fire, and one that then
    goes silent would get a whole timeout more; the attempt's deadline cuts both at the limit. (The limit is
    shortened to 2 s here so this takes seconds, not tens of seconds.)"""
    endpoint, _ = hook
    monkeypatch.setattr(delivery, "TIMEOUT_SECONDS", 2.0)
    receiver.answer(Answer(trickle=0.25), Answer(trickle=0.25, trickle_for=1.5))
    for _ in range(2):
        started = time.monotonic()
        if not Delivery.objects.filter(endpoint=endpoint).exists():
            new_key()
        else:
            delivery.attempt(log_of(endpoint)[-1].pk)
        assert time.monotonic() - started < 3.0  # per-read timeouts alone: 2.25 s and 3.5 s, then more
    first, second = log_of(endpoint)[:2]
    for row in (first, second):
        assert row.status == "failed" and row.http_status is None and "within 2 s" in row.error


def test_a_redirect_is_never_followed_and_counts_as_a_failure(hook, receiver, new_key):
    endpoint, _ = hook
    receiver.answer(Answer(status=302, location=receiver.url.replace("/hook", "/elsewhere")))
    new_key()
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert [(d.status, d.http_status) for d in log_of(endpoint)] == [("failed", 302), ("pending", None)]


def test_the_log_keeps_the_first_kilobyte_of_the_answer(hook, receiver, new_key):
    endpoint, _ = hook
    receiver.answer(Answer(status=200, body=b"a" * 5000))
    new_key()
    assert log_of(endpoint)[0].response_body == "a" * 1024


def test_a_refused_connection_is_logged_and_retried(team, owner, new_key):
    endpoint, _ = add_endpoint(team, owner, f"http://127.0.0.1:{closed_port()}/hook")
    new_key()
    failed, retry = log_of(endpoint)
    assert failed.status == "failed" and failed.error.startswith("Could not connect")
    assert retry.status == "pending" and retry.attempt == 2


def test_only_enabled_endpoints_subscribed_to_the_type_receive_it(team, owner, receiver, new_key, committed):
    subscribed, _ = add_endpoint(team, owner, receiver.url, events=["key.revoked"])
    add_endpoint(team, owner, receiver.url.replace("/hook", "/off"), enabled=False)
    minted = new_key()
    assert receiver.requests == []
    with committed():
        revoke_key(minted.key, actor=KeyActor.system(team, "test"))
    assert [r.header("Tollgate-Event-Type") for r in receiver.requests] == ["key.revoked"]
    assert [r.path for r in receiver.requests] == ["/hook"]


# --- redelivery, test events, the sweeper --------------------------------------------------------------------------


def test_a_redelivery_sends_the_same_event_again_as_the_next_attempt(team, owner, hook, receiver, new_key, committed):
    endpoint, secret = hook
    new_key()
    first = log_of(endpoint)[0]
    with committed():
        services.redeliver(endpoint, first.public_id, actor=services.Actor.for_user(owner, team.public_id))
    one, two = receiver.requests
    assert one.header("Tollgate-Event-Id") == two.header("Tollgate-Event-Id")
    assert two.header("Tollgate-Delivery-Attempt") == "2" and verifies(two, secret)
    again = log_of(endpoint)[-1]
    assert (again.attempt, again.manual, again.status) == (2, True, "succeeded")


def test_a_failed_redelivery_is_not_retried(team, owner, hook, receiver, new_key, committed, drive):
    endpoint, _ = hook
    new_key()
    receiver.answer(500)
    with committed():
        services.redeliver(
            endpoint, log_of(endpoint)[0].public_id, actor=services.Actor.for_user(owner, team.public_id)
        )
    assert log_of(endpoint)[-1].status == "failed" and drive(advance=10**6) == 0


def test_a_test_event_is_a_signed_ping_to_that_endpoint_only(team, owner, hook, receiver, committed):
    endpoint, secret = hook
    add_endpoint(team, owner, receiver.url.replace("/hook", "/other"))
    with committed():
        services.send_test(endpoint, actor=services.Actor.for_user(owner, team.public_id))
    [got] = receiver.requests
    body = json.loads(got.body)
    assert (got.path, body["type"], body["data"]["object"]["id"]) == ("/hook", "ping", endpoint.public_id)
    assert verifies(got, secret)


def test_the_sweeper_resends_what_a_dead_worker_or_a_lost_task_left_behind(hook, receiver, new_key, drive):
    endpoint, _ = hook
    receiver.answer(500)
    new_key()
    assert len(receiver.requests) == 1
    background_lost = log_of(endpoint)[-1]  # the retry's countdown task is "lost":
    from config import background

    background.worker.clear()
    assert delivery.requeue_stalled() == 0  # not overdue yet
    Delivery.objects.filter(pk=background_lost.pk).update(
        scheduled_at=background_lost.scheduled_at - timedelta(hours=1)
    )
    assert delivery.requeue_stalled() == 1
    assert len(receiver.requests) == 2 and log_of(endpoint)[-1].status == "succeeded"

    Delivery.objects.filter(pk=background_lost.pk).update(
        status=DeliveryStatus.SENDING, started_at=background_lost.scheduled_at - timedelta(minutes=10)
    )  # a worker that claimed it and died before writing the outcome
    assert delivery.requeue_stalled() == 1
    assert len(receiver.requests) == 3  # at least once


def test_a_delivery_whose_endpoint_was_deleted_meanwhile_sends_nothing(team, owner, hook, receiver, new_key):
    endpoint, _ = hook
    receiver.answer(500)
    new_key()
    retry = log_of(endpoint)[-1]
    services.delete_endpoint(endpoint, actor=services.Actor.for_user(owner, team.public_id))
    assert delivery.attempt(retry.pk) == "skipped" and len(receiver.requests) == 1


def test_the_secret_never_reaches_the_logs_or_the_audit_log(team, owner, hook, receiver, new_key, caplog):
    endpoint, secret = hook
    caplog.set_level(logging.DEBUG)
    receiver.answer(500)
    new_key()
    rotated = services.rotate_secret(endpoint, actor=services.Actor.for_user(owner, team.public_id))
    text = caplog.text + json.dumps(list(AuditLog.objects.values_list("metadata", flat=True)))
    assert "webhook delivery" in caplog.text
    assert secret not in text and rotated.secret not in text
    assert secret not in Endpoint.objects.get(pk=endpoint.pk).secret_encrypted


# --- the runners -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_in_process_worker_of_the_embedded_default_delivers_after_the_commit(team, owner, receiver, settings):
    from config import background

    settings.BACKGROUND_RUNNER = "thread"
    endpoint, secret = add_endpoint(team, owner, receiver.url)
    try:
        mint_key(team=team, name="ci", created_by=owner)
        assert receiver.wait_for(1, timeout=10)  # sent from the worker's thread, not this one
    finally:
        background.stop()
    assert verifies(receiver.requests[0], secret)
    for _ in range(50):  # the worker writes the outcome right after the answer
        if Delivery.objects.get(endpoint=endpoint).status == "succeeded":
            break
        time.sleep(0.05)
    assert Delivery.objects.get(endpoint=endpoint).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_the_celery_tasks_deliver_and_retry(team, owner, receiver, settings):
    from config.celery import app as celery_app

    settings.BACKGROUND_RUNNER = "celery"
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True  # no worker in the suite: the task runs as Celery would run it
    try:
        receiver.answer(500, 200)
        endpoint, _ = add_endpoint(team, owner, receiver.url)
        mint_key(team=team, name="ci", created_by=owner)
    finally:
        celery_app.conf.task_always_eager = eager
    assert [r.header("Tollgate-Delivery-Attempt") for r in receiver.requests] == ["1", "2"]  # eager ignores countdown
    assert [d.status for d in log_of(endpoint)] == ["failed", "succeeded"]
