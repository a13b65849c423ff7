from __future__ import annotations

import pytest
import pytest_asyncio

from gateway.providers.http import close_session
from tests.gateway.misbehaving_upstream import MisbehavingUpstream


@pytest.fixture(scope="module")
def _upstream_server():
    with MisbehavingUpstream() as server:
        yield server


@pytest.fixture
def upstream(_upstream_server):
    _upstream_server.reset()
    return _upstream_server


@pytest_asyncio.fixture(autouse=True)
async def _close_pooled_session():
    yield
    await close_session()
