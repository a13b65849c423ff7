from __future__ import annotations

import math
import time

import jsonschema
import orjson
import pytest

from gateway.providers import ProviderConfig, get_provider
from gateway.providers.base import ProviderError
from gateway.providers.schema_values import value_for_schema
from gateway.tokens import count_prompt_tokens, count_tokens

SIM = ProviderConfig(kind="simulator", name="demo-sim")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "hourly": {"type": "boolean"},
                "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                    "required": ["lat", "lon"],
                    "additionalProperties": False,
                },
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}


def chat(content: str, **extra):
    return {"model": "demo-chat", "messages": [{"role": "user", "content": content}], **extra}


async def collect(stream):
    return [chunk async for chunk in stream]


async def test_the_same_request_always_gets_the_same_reply_and_another_request_another():
    sim = get_provider(SIM)
    first = await sim.chat(chat("Tell me about tolls"), upstream_model="sim-1")
    again = await sim.chat(chat("Tell me about tolls"), upstream_model="sim-1")
    other = await sim.chat(chat("Tell me about bridges"), upstream_model="sim-1")
    text = first.body["choices"][0]["message"]["content"]
    assert text == again.body["choices"][0]["message"]["content"]
    assert text != other.body["choices"][0]["message"]["content"]
    assert text.startswith('You said: "Tell me about tolls".')


async def test_usage_is_the_real_token_count_of_prompt_and_reply():
    payload = chat("Count my tokens please")
    result = await get_provider(SIM).chat(payload, upstream_model="sim-1")
    text = result.body["choices"][0]["message"]["content"]
    assert result.usage.completion_tokens == count_tokens(text)
    assert result.usage.prompt_tokens == count_prompt_tokens(payload)
    assert result.body["usage"]["total_tokens"] == result.usage.prompt_tokens + result.usage.completion_tokens


@pytest.mark.parametrize("limit_field", ["max_tokens", "max_completion_tokens"])
async def test_it_stops_at_max_tokens_with_finish_reason_length(limit_field):
    result = await get_provider(SIM).chat(chat("Say a lot", **{limit_field: 5}), upstream_model="sim-1")
    choice = result.body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert result.usage.completion_tokens == 5 == count_tokens(choice["message"]["content"])


async def test_echo_replies_verbatim_and_a_stop_sequence_cuts_before_it():
    sim = get_provider(SIM)
    plain = await sim.chat(chat("echo: alpha beta STOP gamma"), upstream_model="sim-1")
    assert plain.body["choices"][0]["message"]["content"] == "alpha beta STOP gamma"
    cut = await sim.chat(chat("echo: alpha beta STOP gamma", stop=["STOP", "zzz"]), upstream_model="sim-1")
    assert cut.body["choices"][0]["message"]["content"] == "alpha beta "
    assert cut.body["choices"][0]["finish_reason"] == "stop"


async def test_with_tools_it_calls_one_whose_arguments_fit_the_schema():
    result = await get_provider(SIM).chat(chat("Weather in Paris?", tools=[WEATHER_TOOL]), upstream_model="sim-1")
    choice = result.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather" and call["id"].startswith("call_")
    jsonschema.validate(orjson.loads(call["function"]["arguments"]), WEATHER_TOOL["function"]["parameters"])


async def test_tool_choice_none_answers_in_words_and_a_tool_result_gets_a_summary():
    sim = get_provider(SIM)
    none = await sim.chat(chat("Weather?", tools=[WEATHER_TOOL], tool_choice="none"), upstream_model="sim-1")
    assert none.body["choices"][0]["message"]["content"]
    assert "tool_calls" not in none.body["choices"][0]["message"]
    round_trip = {
        "model": "demo-chat",
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees and sunny"},
        ],
    }
    answer = await sim.chat(round_trip, upstream_model="sim-1")
    assert answer.body["choices"][0]["finish_reason"] == "stop"
    assert answer.body["choices"][0]["message"]["content"].startswith('The tool returned "21 degrees and sunny"')


async def test_a_specific_tool_choice_is_the_tool_called():
    other = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}
    result = await get_provider(SIM).chat(
        chat("hi", tools=[other, WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "noop"}}),
        upstream_model="sim-1",
    )
    assert result.body["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "noop", "arguments": "{}"}


async def test_json_object_mode_returns_a_json_object():
    result = await get_provider(SIM).chat(
        chat("json please", response_format={"type": "json_object"}), upstream_model="sim-1"
    )
    assert isinstance(orjson.loads(result.body["choices"][0]["message"]["content"]), dict)


RECIPE_SCHEMA = {
    "type": "object",
    "$defs": {
        "step": {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}, "text": {"type": "string", "maxLength": 40}},
            "required": ["n", "text"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "title": {"type": "string"},
        "servings": {"type": "integer", "minimum": 1, "maximum": 8, "multipleOf": 2},
        "vegan": {"type": "boolean"},
        "rating": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 5}, {"type": "null"}]},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
        "course": {"type": ["string", "null"], "enum": ["starter", "main", "dessert", None]},
        "created": {"type": "string", "format": "date-time"},
        "contact": {"type": "string", "format": "email"},
    },
    "required": ["title", "servings", "vegan", "rating", "steps", "course", "created", "contact"],
    "additionalProperties": False,
}


async def test_json_schema_mode_returns_json_valid_against_the_schema():
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "recipe", "strict": True, "schema": RECIPE_SCHEMA},
    }
    for dish in ("soup", "cake", "salad", "stew"):
        result = await get_provider(SIM).chat(
            chat(f"A recipe for {dish}", response_format=response_format), upstream_model="sim-1"
        )
        value = orjson.loads(result.body["choices"][0]["message"]["content"])
        jsonschema.validate(value, RECIPE_SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("seed", range(25))
def test_generated_values_satisfy_assorted_schemas(seed):
    import random

    schemas = [
        WEATHER_TOOL["function"]["parameters"],
        RECIPE_SCHEMA,
        {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "uniqueItems": True, "minItems": 3},
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"const": 3}}, "required": ["b"]},
            ]
        },
        {"type": "object", "properties": {"tree": {"$ref": "#"}}, "required": []},
        {"type": "string", "minLength": 30, "maxLength": 35},
        {"type": "number", "minimum": -2.5, "maximum": -2.4},
        {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12},
    ]
    rng = random.Random(seed)
    for schema in schemas:
        jsonschema.validate(value_for_schema(schema, rng), schema)


async def test_a_stream_has_a_role_chunk_content_chunks_a_finish_chunk_and_a_usage_chunk():
    sim = get_provider(SIM)
    payload = chat("Stream something to me")
    chunks = await collect(sim.stream_chat(payload, upstream_model="sim-1"))
    whole = await sim.chat(payload, upstream_model="sim-1")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(contents) > 3 and all(contents)
    assert "".join(contents) == whole.body["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole.body["usage"]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)


async def test_a_streamed_tool_call_sends_id_and_name_then_argument_fragments():
    chunks = await collect(
        get_provider(SIM).stream_chat(chat("Weather?", tools=[WEATHER_TOOL]), upstream_model="sim-1")
    )
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    assert len(calls) > 2 and all(c["index"] == 0 for c in calls)
    arguments = "".join(c["function"]["arguments"] for c in calls)
    jsonschema.validate(orjson.loads(arguments), WEATHER_TOOL["function"]["parameters"])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_latency_and_tokens_per_second_pace_the_stream():
    sim = get_provider(
        ProviderConfig(kind="simulator", name="slow-sim", options={"latency_ms": 50, "tokens_per_second": 400})
    )
    started = time.perf_counter()
    stream = sim.stream_chat(chat("echo: " + "word " * 20, max_tokens=20), upstream_model="sim-1")
    await stream.__anext__()
    first = time.perf_counter() - started
    chunks = [c async for c in stream]
    total = time.perf_counter() - started
    assert 0.045 <= first < 0.5
    assert total >= 0.05 + 20 / 400 * 0.9  # 20 tokens at 400/s after the first-token latency
    assert chunks[-1]["usage"]["completion_tokens"] == 20


async def test_legacy_completion_returns_text_per_prompt_and_honours_max_tokens():
    sim = get_provider(SIM)
    result = await sim.completion(
        {"model": "demo", "prompt": ["Once upon a time", "echo: exact"], "max_tokens": 50}, upstream_model="sim-1"
    )
    first, second = result.body["choices"]
    assert result.body["object"] == "text_completion"
    assert first["text"] and second["text"] == "exact"
    short = await sim.completion(
        {"model": "demo", "prompt": "Once upon a time", "max_tokens": 3}, upstream_model="sim-1"
    )
    assert short.body["choices"][0]["finish_reason"] == "length" and short.usage.completion_tokens == 3
    chunks = await collect(
        sim.stream_completion({"model": "demo", "prompt": "Once upon a time", "max_tokens": 3}, upstream_model="sim-1")
    )
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == short.body["choices"][0]["text"]
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_embeddings_are_deterministic_unit_vectors_of_the_asked_dimensions():
    sim = get_provider(SIM)
    result = await sim.embeddings(
        {"model": "demo-embed", "input": ["the cat sat", "the cat sat", "stock prices"], "dimensions": 64},
        upstream_model="sim-embed",
    )
    vectors = [d["embedding"] for d in result.body["data"]]
    assert [len(v) for v in vectors] == [64, 64, 64]
    for v in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9)
    assert vectors[0] == vectors[1] != vectors[2]
    default = await sim.embeddings({"model": "demo-embed", "input": "the cat sat"}, upstream_model="sim-embed")
    assert len(default.body["data"][0]["embedding"]) == 256
    assert result.usage.prompt_tokens == 2 * count_tokens("the cat sat") + count_tokens("stock prices")
    assert result.usage.completion_tokens == 0


async def test_related_texts_get_closer_embeddings_than_unrelated_ones():
    result = await get_provider(SIM).embeddings(
        {"input": ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew"]}, upstream_model="e"
    )
    a, b, c = (d["embedding"] for d in result.body["data"])
    assert sum(x * y for x, y in zip(a, b, strict=True)) > sum(x * y for x, y in zip(a, c, strict=True))


async def test_impossible_embedding_dimensions_are_refused_as_a_request_error():
    with pytest.raises(ProviderError) as error:
        await get_provider(SIM).embeddings({"input": "x", "dimensions": 0}, upstream_model="e")
    assert error.value.status == 400 and not error.value.retryable
