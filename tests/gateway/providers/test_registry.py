from __future__ import annotations

import pytest

from gateway.providers import ProviderConfig, get_provider
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.http import close_session, get_session
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.providers.simulator import SimulatorProvider


def test_it_builds_one_provider_per_configuration_and_a_new_one_when_it_changes():
    config = ProviderConfig(
        kind="openai",
        name="openai",
        base_url="https://api.example/v1",
        api_key="a",
        options={"headers": {"X-Org": "1"}},
    )
    same = ProviderConfig(
        kind="openai",
        name="openai",
        base_url="https://api.example/v1",
        api_key="a",
        options={"headers": {"X-Org": "1"}},
    )
    rotated = ProviderConfig(kind="openai", name="openai", base_url="https://api.example/v1", api_key="b")
    assert get_provider(config) is get_provider(same)
    assert get_provider(rotated) is not get_provider(config)
    assert isinstance(get_provider(config), OpenAICompatProvider)
    assert isinstance(get_provider(ProviderConfig(kind="anthropic", name="a")), AnthropicProvider)
    assert isinstance(get_provider(ProviderConfig(kind="simulator", name="s")), SimulatorProvider)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown provider kind"):
        get_provider(ProviderConfig(kind="carrier-pigeon", name="p"))


async def test_every_call_on_a_loop_shares_one_pooled_session_until_it_is_closed():
    session = get_session()
    assert get_session() is session
    assert session.connector.limit >= 4096
    await close_session()
    assert session.closed
    assert get_session() is not session
