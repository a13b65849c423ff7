"""Shared fixtures: a team with one member per role, and an outsider in another team who must see nothing."""

from __future__ import annotations

import os

import pytest
from django.core.cache import cache
from django.db import connection

from accounts.models import Membership, Role, Team, User
from accounts.services import create_team

# Shared servers: the live ASGI app (`live`) for the browser and end-to-end suites, and the misbehaving
# upstream (`upstream`) for the provider and end-to-end suites.
pytest_plugins = ["tests.live_server", "tests.gateway.misbehaving_upstream"]

requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="needs PostgreSQL (set DATABASE_URL); concurrency and money tests run there in CI",
)


@pytest.fixture(scope="session", autouse=True)
def _no_connection_outlives_the_session(django_db_setup, django_db_blocker):
    """Worker threads (config.db.run_db, the live server's) keep persistent connections; PostgreSQL cannot drop
    the test database while they are open."""
    yield
    from tests.live_server import drop_other_connections

    with django_db_blocker.unblock():
        drop_other_connections()


@pytest.fixture(autouse=True)
def _fresh_rate_limit_windows():
    """Rate-limit windows live in the cache and ids repeat between tests: no test inherits another's counts, nor
    what this process last saw of them (gateway.ratelimit.has_headroom)."""
    from gateway import ratelimit

    cache.clear()
    ratelimit.forget()


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """A hold lease and queued background work belong to one test: their rows roll back with it. So do teams,
    whose primary keys the next test reuses: the live updates' team id → public id cache is emptied too."""
    from billing import leases
    from config import background
    from dashboard import live

    leases.forget()
    background.worker.clear()
    live._public_ids.clear()
    yield
    leases.forget()
    background.worker.clear()
    live._public_ids.clear()


@pytest.fixture(autouse=True)
def _media_in_a_temporary_folder(settings, tmp_path_factory):
    """Files a test stores (generated images) go to a folder of its own, never to var/media."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path_factory.mktemp("media"))},
        },
    }


@pytest.fixture(autouse=True)
def _db_units_on_the_test_connection(settings):
    """config.db.run_db units run on the test's own thread and connection, so they see the rows of the test's
    transaction (the live server, `live`, turns this off: its rows are committed)."""
    settings.DB_THREAD_SENSITIVE = True


@pytest.fixture(autouse=True)
def _fresh_live_update_caches():
    """dashboard.live remembers each team id's public id; between tests (not in production) a flushed
    database hands the same id to a new team, whose updates would then go to the old team's group."""
    from dashboard import live

    live._public_ids.clear()
    live._listening.clear()


@pytest.fixture(autouse=True)
def _no_async_db_pool(settings):
    """The async hold/settle connections (billing/backends/postgres.py) cannot see rows of the test transaction: off
    by default; on for the live server (`live`) and for the tests of the pool itself."""
    settings.DB_ASYNC_POOL_SIZE = 0


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def make_user(email: str, password: str = "correct-horse-battery") -> User:
    return User.objects.create_user(email=email, password=password)


@pytest.fixture
def owner(db) -> User:
    return make_user("olivia.owner@acme.test")


@pytest.fixture
def team(owner) -> Team:
    return create_team(name="Acme", slug="acme", owner=owner)


def _member(team: Team, email: str, role: str) -> User:
    user = make_user(email)
    Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def admin_user(team) -> User:
    return _member(team, "adam.admin@acme.test", Role.ADMIN)


@pytest.fixture
def developer(team) -> User:
    return _member(team, "dana.developer@acme.test", Role.DEVELOPER)


@pytest.fixture
def viewer(team) -> User:
    return _member(team, "vic.viewer@acme.test", Role.VIEWER)


@pytest.fixture
def billing_user(team) -> User:
    return _member(team, "bill.billing@acme.test", Role.BILLING)


@pytest.fixture
def outsider(db) -> User:
    """Owner of another team; must never see Acme's data."""
    user = make_user("mallory@evil.test")
    create_team(name="Evil Corp", slug="evil", owner=user)
    return user


@pytest.fixture
def other_team(outsider) -> Team:
    return Team.objects.get(slug="evil")
