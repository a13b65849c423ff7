from __future__ import annotations

import pytest_asyncio

from gateway.providers.http import close_session


@pytest_asyncio.fixture(autouse=True)
async def _close_pooled_session():
    yield
    await close_session()
