"""Settings switch on DATABASE_URL / REDIS_URL and nothing else."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def settings_in_subprocess(env: dict[str, str]) -> dict:
    code = (
        "import json, django; from django.conf import settings as s; django.setup();"
        "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'cache': s.CACHES['default']['BACKEND'],"
        "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'eager': s.CELERY_TASK_ALWAYS_EAGER,"
        "'broker': s.CELERY_BROKER_URL, 'conn_max_age': s.DATABASES['default'].get('CONN_MAX_AGE'),"
        "'txn': s.DATABASES['default'].get('OPTIONS', {}).get('transaction_mode')}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings", TOLLGATE_TESTING="1")
    out = subprocess.run([sys.executable, "-c", code], env=clean, cwd=ROOT, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_default():
    s = settings_in_subprocess({})
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["txn"] == "IMMEDIATE"
    assert s["cache"].endswith("LocMemCache")
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"
    assert s["eager"] is True


def test_production_services_from_urls():
    s = settings_in_subprocess(
        {"DATABASE_URL": "postgres://u:p@db.internal:5432/tollgate", "REDIS_URL": "redis://cache.internal:6379/0"}
    )
    assert s["db"] == "django.db.backends.postgresql"
    assert s["conn_max_age"] == 600
    assert s["cache"].endswith("RedisCache")
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"
    assert s["broker"] == "redis://cache.internal:6379/0"
    assert s["eager"] is False


def test_a_bad_boolean_fails_loudly():
    with pytest.raises(subprocess.CalledProcessError) as exc:
        settings_in_subprocess({"DEBUG": "maybe"})
    assert "DEBUG must be a boolean" in exc.value.stderr


def test_check_deploy_is_clean_with_production_variables():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        TOLLGATE_TESTING="0",
        SECRET_KEY="x" * 20 + "-production-secret-" + "y" * 30,
        DEBUG="0",
        ALLOWED_HOSTS="tollgate.example.com",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _check_deploy(**extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        TOLLGATE_TESTING="0",
        SECRET_KEY="x" * 20 + "-production-secret-" + "y" * 30,
        DEBUG="0",
        ALLOWED_HOSTS="tollgate.example.com",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        DATABASE_URL="postgres://tollgate@db.invalid:5432/tollgate",  # production; check --deploy does not connect
        **extra,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_check_deploy_fails_naming_email_backend_while_production_mail_goes_to_the_console():
    out = _check_deploy()
    assert out.returncode != 0
    assert "tollgate.E001" in out.stderr and "EMAIL_BACKEND" in out.stderr


def test_check_deploy_is_clean_once_a_real_email_backend_is_set():
    out = _check_deploy(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="smtp.example.com")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.django_db
def test_health_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/login/").status_code == 301  # everything else is


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_without_inline_script(client):
    policy = client.get("/login/")["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy


def test_the_server_warns_at_start_up_while_production_mail_goes_to_the_console(settings, caplog):
    import logging

    from config import lifespan

    settings.DATABASE_URL = "postgres://tollgate@db.internal/tollgate"
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    with caplog.at_level(logging.WARNING, logger="tollgate"):
        for warning in lifespan.production_warnings():
            logging.getLogger("tollgate").warning(warning)
    assert "EMAIL_BACKEND" in caplog.text
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert lifespan.production_warnings() == []
