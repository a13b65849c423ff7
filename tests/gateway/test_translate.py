"""The translations between chat completions and the Responses and Messages APIs, both ways, as pure functions."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.providers.anthropic import from_anthropic_response, to_anthropic_request, usage_from_anthropic
from gateway.providers.base import UpstreamUsage, usage_from_openai
from gateway.translate import messages as msg
from gateway.translate import responses as resp

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def fixture_json(name: str) -> dict:
    return orjson.loads((FIXTURES / name).read_bytes())


def validated(body: dict) -> dict:
    return msg.MessagesRequest.model_validate(body).model_dump(mode="json", by_alias=True, exclude_none=True)


# --- Messages → chat → Messages ---------------------------------------------------------------------------


def test_a_messages_request_survives_the_round_trip_through_chat_and_the_anthropic_provider():
    anthropic_body = fixture_json("chat_request.anthropic.json")
    chat = msg.to_chat(validated(anthropic_body))
    assert to_anthropic_request(chat, anthropic_body["model"]) == anthropic_body


def test_a_messages_request_becomes_the_chat_request_openai_documents():
    chat = msg.to_chat(validated(fixture_json("chat_request.anthropic.json")))
    assert chat["messages"][0] == {
        "role": "system",
        "content": "You are a terse weather assistant.\n\nAlways use Celsius.",
    }
    user = chat["messages"][1]["content"]
    assert user[1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + user[1]["image_url"]["url"][22:]},
    }
    assert user[2] == {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg"}}
    assistant = chat["messages"][2]
    assert assistant["content"] == "Let me check both cities."
    assert orjson.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {"city": "Lyon", "unit": "celsius"}
    # tool results come right after the calls, before the rest of their user turn
    assert [m["role"] for m in chat["messages"][3:]] == ["tool", "tool", "user"]
    assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01A", "content": "18 C, sunny"}
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["stop"] == ["\n\n", "END"] and chat["user"] == "user-42" and chat["max_tokens"] == 300
    assert chat["tools"][0]["function"]["parameters"]["required"] == ["city"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_maps_onto_chat(choice, expected):
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    assert msg.to_chat(validated(body))["tool_choice"] == expected


def test_tool_results_with_errors_and_images_and_documents_are_kept():
    body = validated(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "boom"},
                                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                            ],
                        },
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
                        },
                    ],
                }
            ],
        }
    )
    chat = msg.to_chat(body)
    assert chat["messages"][0] == {"role": "system", "content": "one\n\ntwo"}
    assert chat["messages"][1] == {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}
    parts = chat["messages"][2]["content"]
    assert parts[0]["image_url"]["url"] == "https://x.test/a.png"
    assert parts[1]["file"]["file_data"] == "data:application/pdf;base64,JVBER"


def test_what_only_anthropic_serves_is_named_and_left_out_of_the_translation():
    body = validated(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"name": "web_search", "type": "web_search_20250305"}, {"name": "w", "input_schema": {}}],
        }
    )
    assert "web_search_20250305" in msg.untranslatable(body)
    assert [t["function"]["name"] for t in msg.to_chat(body)["tools"]] == ["w"]
    by_url = {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
    assert "URL" in msg.untranslatable({"messages": [{"role": "user", "content": [by_url]}]})
    assert msg.untranslatable({"messages": [{"role": "user", "content": "x"}]}) is None


def test_a_chat_completion_becomes_an_anthropic_message_and_back():
    native = fixture_json("message_tool_use.json")
    chat, _ = from_anthropic_response(native)
    message = msg.message_from_chat(chat)
    assert message["content"] == native["content"]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")],
)
def test_finish_reasons_become_stop_reasons(finish, stop_reason):
    completion = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert msg.message_from_chat(completion)["stop_reason"] == stop_reason


def test_chat_chunks_become_the_anthropic_event_sequence():
    translator = msg.ChatToEvents(model="m", input_tokens=12)
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Let me"}}]},
        {"choices": [{"index": 0, "delta": {"content": " check."}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": ""}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 2}},
        },
    ]
    events = [e for chunk in chunks for e in translator.feed(chunk)] + translator.finish()
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[6]["content_block"] == {"type": "tool_use", "id": "c1", "name": "w", "input": {}}
    assert events[7]["index"] == 1 and events[7]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":'}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 9}
    assert usage_from_anthropic(events[-2]["usage"]) == UpstreamUsage(10, 9, 2)


# --- Responses → chat → Responses -------------------------------------------------------------------------


def parse(body: dict) -> resp.ResponsesRequest:
    request = resp.ResponsesRequest.model_validate(body)
    request._items = resp.input_items(request)
    return request


def test_a_string_input_is_one_user_message_with_instructions_as_system():
    request = parse({"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 40})
    (item,) = request._items
    assert item["type"] == "message" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "Hi"}]
    chat = resp.to_chat(request, request._items)
    assert chat["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert chat["max_tokens"] == 40


def test_items_become_chat_messages_with_tool_calls_joined_to_their_assistant_turn():
    request = parse(
        {
            "model": "m",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Look"},
                        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
                    ],
                },
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"a":1}'},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"a":2}'},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
            "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": True}],
            "tool_choice": {"type": "function", "name": "w"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        }
    )
    chat = resp.to_chat(request, request._items)
    user, assistant, tool1, tool2 = chat["messages"]
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}}
    assert assistant["content"] == "Checking." and [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert tool1 == {"role": "tool", "tool_call_id": "c1", "content": "one"} and tool2["content"] == "two"
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
    }


def test_a_chat_completion_becomes_output_items():
    completion = {
        "choices": [
            {
                "message": {
                    "content": "Done.",
                    "tool_calls": [{"id": "c9", "function": {"name": "w", "arguments": "{}"}}],
                },
                "finish_reason": "length",
            }
        ]
    }
    output, finish = resp.output_from_chat(completion)
    assert [o["type"] for o in output] == ["message", "function_call"]
    assert output[0]["content"][0] == {"type": "output_text", "text": "Done.", "annotations": [], "logprobs": []}
    assert output[0]["status"] == "incomplete" and output[1]["call_id"] == "c9"
    body: dict = {}
    resp.finished(body, output, finish, completed_at=1)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stored_output_continues_as_input():
    first = parse({"model": "m", "input": "Q1"})
    output, _ = resp.output_from_chat({"choices": [{"message": {"content": "A1"}, "finish_reason": "stop"}]})
    second = parse({"model": "m", "input": "Q2"})
    chat = resp.to_chat(second, [*first._items, *output, *second._items])
    assert chat["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]


def test_chat_chunks_become_typed_events_with_sequence_numbers():
    events = resp.ResponseEvents()
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "w", "arguments": "{}"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    got = [e for chunk in chunks for e in events.feed(chunk)] + events.close()
    assert [e["type"] for e in got] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert [e["sequence_number"] for e in got] == list(range(10))
    assert got[5]["item"]["content"][0]["text"] == "Hi" and got[9]["output_index"] == 1
    assert [o["status"] for o in events.output] == ["completed", "completed"]
    assert events.produced() == "Hiw{}"


# --- usage parsers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "10", "completion_tokens": 3},
        {"prompt_tokens": -1, "completion_tokens": 3},
        {"prompt_tokens": 10, "completion_tokens": 3.5},
        {"prompt_tokens": 10, "completion_tokens": True},
        {"prompt_tokens": 10**12, "completion_tokens": 3},
        {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": "2"}},
    ],
)
def test_unbelievable_openai_usage_is_none_so_the_gateway_counts(usage):
    assert usage_from_openai(usage) is None


@pytest.mark.parametrize(
    "usage",
    [
        {"output_tokens": 3},
        {"input_tokens": "10", "output_tokens": 3},
        {"input_tokens": 10, "output_tokens": -3},
        {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 10**12},
    ],
)
def test_unbelievable_anthropic_usage_is_none_so_the_gateway_counts(usage):
    assert usage_from_anthropic(usage) is None


def test_anthropic_usage_bills_cache_writes_as_input_and_reads_as_cached():
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 7}
    assert usage_from_anthropic(usage) == UpstreamUsage(prompt_tokens=15, completion_tokens=7, cached_tokens=20)
