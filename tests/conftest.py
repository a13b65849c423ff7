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


@pytest.fixture(autouse=True)
def _fresh_rate_limit_windows():
    """Rate-limit windows live in the cache and ids repeat between tests: no test inherits another's counts."""
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_live_update_caches():
    """dashboard.live remembers each team id's public id; between tests (not in production) a flushed
    database hands the same id to a new team, whose updates would then go to the old team's group."""
    from dashboard import live

    live._public_ids.clear()
    live._listening.clear()


@pytest.fixture(autouse=True)
def _no_async_db_pool(settings):
    """The async hold/settle connections (billing.fastpath) cannot see rows of the test transaction: off
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
