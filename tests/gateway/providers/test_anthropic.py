from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest

from gateway.providers import ProviderConfig, get_provider
from gateway.providers.anthropic import to_anthropic_request
from gateway.providers.base import ProviderError, UpstreamUsage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict:
    return orjson.loads(fixture(name))


def anthropic(upstream, **options):
    return get_provider(
        ProviderConfig(
            kind="anthropic",
            name="anthropic",
            base_url=upstream.root_url,
            api_key="sk-ant-secret",
            timeout_seconds=5,
            options=options,
        )
    )


async def collect(stream):
    return [chunk async for chunk in stream]


async def test_the_outgoing_request_is_translated_exactly_as_anthropic_documents_it(upstream):
    upstream.script("/v1/messages", fixture("message_text.json"))
    await anthropic(upstream).chat(fixture_json("chat_request.openai.json"), upstream_model="claude-sonnet-4-5")
    (seen,) = upstream.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == "sk-ant-secret"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in seen.headers
    assert seen.body == fixture_json("chat_request.anthropic.json")


async def test_a_text_reply_comes_back_as_a_chat_completion_with_cached_tokens(upstream):
    upstream.script("/v1/messages", fixture("message_text.json"))
    result = await anthropic(upstream).chat(
        {"messages": [{"role": "user", "content": "Weather?"}]}, upstream_model="claude-sonnet-4-5"
    )
    assert result.body["object"] == "chat.completion"
    choice = result.body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Paris is sunny at 18 C; Lyon is rainy at 15 C.",
        "refusal": None,
    }
    assert choice["finish_reason"] == "stop"
    assert result.usage == UpstreamUsage(prompt_tokens=2095, completion_tokens=21, cached_tokens=1800)
    assert result.body["usage"]["prompt_tokens"] == 2095 + 1800
    assert result.body["usage"]["prompt_tokens_details"] == {"cached_tokens": 1800}
    assert upstream.requests[0].body["max_tokens"] == 4096  # Anthropic requires it; the default fills in


async def test_a_tool_use_reply_becomes_tool_calls(upstream):
    upstream.script("/v1/messages", fixture("message_tool_use.json"))
    result = await anthropic(upstream).chat(
        {
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        },
        upstream_model="claude-sonnet-4-5",
    )
    choice = result.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the weather in Paris."
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert upstream.requests[0].body["tools"][0]["input_schema"] == {"type": "object"}
    assert "tool_choice" not in upstream.requests[0].body


async def test_a_text_stream_becomes_openai_chunks_ending_with_usage(upstream):
    upstream.script("/v1/messages", fixture("stream_text.sse"), piece_size=7)  # split mid-event and mid-UTF-8
    chunks = await collect(
        anthropic(upstream).stream_chat(
            {"messages": [{"role": "user", "content": "Hi"}], "stream": True}, upstream_model="claude-sonnet-4-5"
        )
    )
    assert upstream.requests[0].body["stream"] is True
    assert upstream.requests[0].headers["Accept"] == "text/event-stream"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello, wörld! ✨"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"  # max_tokens
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 15,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10},
    }


async def test_a_tool_use_stream_becomes_tool_call_chunks_with_argument_fragments(upstream):
    upstream.script("/v1/messages", fixture("stream_tool_use.sse"), piece_size=64)
    chunks = await collect(
        anthropic(upstream).stream_chat(
            {"messages": [{"role": "user", "content": "Weather in SF?"}]}, upstream_model="claude-sonnet-4-5"
        )
    )
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == {"city": "San Francisco", "unit": "fahrenheit"}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Okay, let me check."}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 89 and chunks[-1]["usage"]["prompt_tokens"] == 472


async def test_an_error_event_mid_stream_is_a_retryable_provider_error(upstream):
    upstream.script("/v1/messages", fixture("stream_overloaded.sse"))
    with pytest.raises(ProviderError) as error:
        await collect(
            anthropic(upstream).stream_chat(
                {"messages": [{"role": "user", "content": "Hi"}]}, upstream_model="claude-sonnet-4-5"
            )
        )
    assert (error.value.status, error.value.retryable) == (529, True)
    assert "Overloaded" in error.value.message


async def test_a_stream_without_message_stop_is_truncated(upstream):
    raw = fixture("stream_text.sse")
    upstream.script("/v1/messages", raw[: raw.index(b"event: message_stop")] + b"event: message_st")
    with pytest.raises(ProviderError) as error:
        await collect(
            anthropic(upstream).stream_chat(
                {"messages": [{"role": "user", "content": "Hi"}]}, upstream_model="claude-sonnet-4-5"
            )
        )
    assert error.value.kind == "malformed" and "message_stop" in error.value.message


async def test_an_invalid_request_answer_is_not_retried(upstream):
    upstream.script("/v1/messages", fixture("error_invalid_request.json"), status=400)
    with pytest.raises(ProviderError) as error:
        await anthropic(upstream).chat({"messages": [{"role": "user", "content": "Hi"}]}, upstream_model="c")
    assert (error.value.kind, error.value.status, error.value.retryable) == ("http", 400, False)
    assert "roles must alternate" in error.value.message


def test_tool_choice_variants_translate_to_anthropic_forms():
    base = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    expected = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
    for choice, translated in expected.items():
        assert to_anthropic_request({**base, "tool_choice": choice}, "m")["tool_choice"] == translated
    specific = {"type": "function", "function": {"name": "f"}}
    assert to_anthropic_request({**base, "tool_choice": specific}, "m")["tool_choice"] == {"type": "tool", "name": "f"}


def test_json_response_formats_become_a_system_instruction_and_legacy_fields_are_dropped():
    payload = {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 10,
        "frequency_penalty": 1,
        "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
    }
    body = to_anthropic_request(payload, "m")
    assert body["system"].startswith("Respond with a single JSON value")
    assert '{"type":"object"}' in body["system"]
    assert set(body) == {"model", "max_tokens", "messages", "system"}


def test_requests_it_cannot_express_are_client_errors():
    for payload in (
        {"messages": [{"role": "system", "content": "only a system prompt"}]},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                },
            ]
        },
    ):
        with pytest.raises(ProviderError) as error:
            to_anthropic_request(copy.deepcopy(payload), "m")
        assert error.value.status == 400 and not error.value.retryable


async def test_legacy_completions_ride_on_messages(upstream):
    upstream.script("/v1/messages", fixture("message_text.json"))
    result = await anthropic(upstream).completion({"prompt": "Weather?", "max_tokens": 50}, upstream_model="c")
    assert upstream.requests[0].body["messages"] == [{"role": "user", "content": "Weather?"}]
    assert result.body["object"] == "text_completion"
    assert result.body["choices"][0]["text"].startswith("Paris is sunny")
