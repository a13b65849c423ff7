from __future__ import annotations

import asyncio
import time

import pytest

from gateway.providers import ProviderConfig, get_provider
from gateway.providers.base import ProviderError, UpstreamUsage
from gateway.tokens import count_prompt_tokens, count_tokens
from tests.live_server import closed_port


def provider(upstream, **overrides):
    config = {
        "kind": "openai",
        "name": "fake",
        "base_url": upstream.base_url,
        "api_key": "sk-upstream-secret",
        "timeout_seconds": 5.0,
        "connect_timeout_seconds": 2.0,
        **overrides,
    }
    return get_provider(ProviderConfig(**config))


def chat(**extra):
    return {"model": "public-name", "messages": [{"role": "user", "content": "hello there"}], **extra}


async def collect(stream):
    return [chunk async for chunk in stream]


async def test_it_passes_the_body_through_with_the_upstream_model_and_the_bearer_key(upstream):
    result = await provider(upstream).chat(chat(logit_bias={"42": 1}, x_vendor_knob="kept"), upstream_model="ok")
    (seen,) = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"
    assert seen.body["model"] == "ok"
    assert seen.body["logit_bias"] == {"42": 1} and seen.body["x_vendor_knob"] == "kept"
    assert "stream" not in seen.body
    assert result.body["x_unknown_upstream_field"] is True
    assert result.usage == UpstreamUsage(prompt_tokens=9, completion_tokens=5, cached_tokens=2)


async def test_a_stream_asks_for_usage_and_ends_with_the_usage_chunk(upstream):
    chunks = await collect(provider(upstream).stream_chat(chat(stream=True), upstream_model="ok-c4"))
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "word0 word1 word2 word3 "
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4


async def test_without_upstream_usage_it_counts_the_streamed_text_itself(upstream):
    payload = chat(stream=True, stream_options={"include_usage": False})
    chunks = await collect(provider(upstream).stream_chat(payload, upstream_model="no-usage-c6"))
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}
    expected = count_tokens("".join(f"word{i} " for i in range(6)))
    assert chunks[-1]["usage"]["completion_tokens"] == expected
    assert chunks[-1]["usage"]["prompt_tokens"] == count_prompt_tokens(payload)


async def test_without_upstream_usage_a_plain_reply_is_counted_too(upstream):
    result = await provider(upstream).chat(chat(), upstream_model="no-usage-c3")
    assert result.usage.completion_tokens == count_tokens("word0 word1 word2")
    assert result.body["usage"]["completion_tokens"] == result.usage.completion_tokens


@pytest.mark.parametrize(
    ("model", "status", "retryable"),
    [
        ("status-500", 500, True),
        ("status-503", 503, True),
        ("status-429", 429, True),
        ("status-400", 400, False),
        ("status-404", 404, False),
    ],
)
async def test_upstream_error_statuses_become_http_errors_retryable_only_when_not_our_fault(
    upstream, model, status, retryable
):
    for call in (
        provider(upstream).chat(chat(), upstream_model=model),
        collect(provider(upstream).stream_chat(chat(), upstream_model=model)),
    ):
        with pytest.raises(ProviderError) as error:
            await call
        assert (error.value.kind, error.value.status, error.value.retryable) == ("http", status, retryable)
        assert f"fake upstream says {status}" in error.value.message
    if status == 429:
        assert error.value.retry_after == 1.0


async def test_a_refused_connection_is_a_retryable_connect_error():
    config = ProviderConfig(
        kind="openai", name="gone", base_url=f"http://127.0.0.1:{closed_port()}/v1", timeout_seconds=2
    )
    with pytest.raises(ProviderError) as error:
        await get_provider(config).chat(chat(), upstream_model="ok")
    assert error.value.kind == "connect" and error.value.retryable
    with pytest.raises(ProviderError) as error:
        await collect(get_provider(config).stream_chat(chat(), upstream_model="ok"))
    assert error.value.kind == "connect"


async def test_an_upstream_that_hangs_is_a_timeout(upstream):
    started = time.perf_counter()
    with pytest.raises(ProviderError) as error:
        await provider(upstream, timeout_seconds=0.3).chat(chat(), upstream_model="hang")
    assert error.value.kind == "timeout" and error.value.retryable
    assert time.perf_counter() - started < 2


async def test_a_stream_that_goes_silent_times_out_on_the_read_timeout(upstream):
    stream = provider(upstream, options={"read_timeout_seconds": 0.3}).stream_chat(chat(), upstream_model="hang-stream")
    with pytest.raises(ProviderError) as error:
        await collect(stream)
    assert error.value.kind == "timeout"


async def test_malformed_json_is_a_retryable_malformed_error(upstream):
    with pytest.raises(ProviderError) as error:
        await provider(upstream).chat(chat(), upstream_model="malformed")
    assert error.value.kind == "malformed" and error.value.retryable
    with pytest.raises(ProviderError) as error:
        await collect(provider(upstream).stream_chat(chat(), upstream_model="malformed"))
    assert error.value.kind == "malformed"


async def test_a_stream_without_done_is_reported_truncated_after_its_chunks(upstream):
    received = []
    with pytest.raises(ProviderError) as error:
        async for chunk in provider(upstream).stream_chat(chat(), upstream_model="truncated-c3"):
            received.append(chunk)
    assert error.value.kind == "malformed" and "before [DONE]" in error.value.message
    assert len(received) >= 4  # role chunk and three words reached the caller before the cut


async def test_a_connection_dropped_mid_stream_is_an_error_not_a_short_success(upstream):
    with pytest.raises(ProviderError) as error:
        await collect(provider(upstream).stream_chat(chat(), upstream_model="drop-c10"))
    assert error.value.kind == "malformed" and error.value.retryable
    with pytest.raises(ProviderError) as error:
        await provider(upstream).chat(chat(), upstream_model="drop")
    assert error.value.kind in ("connect", "malformed") and error.value.retryable


async def test_a_slow_stream_still_arrives_whole(upstream):
    chunks = await collect(provider(upstream).stream_chat(chat(), upstream_model="slow-c3-d150"))
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_closing_the_stream_mid_way_disconnects_from_upstream(upstream):
    stream = provider(upstream).stream_chat(chat(), upstream_model="ok-c200-d20")
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()
    assert await asyncio.to_thread(upstream.wait_for_disconnect, 3)
    assert upstream.disconnects == 1


async def test_cancelling_the_consuming_task_disconnects_from_upstream(upstream):
    got_one = asyncio.Event()

    async def consume():
        async for _ in provider(upstream).stream_chat(chat(), upstream_model="ok-c200-d20"):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(upstream.wait_for_disconnect, 3)


async def test_finished_streams_reuse_the_pooled_connection(upstream):
    sim = provider(upstream)
    for _ in range(3):
        await collect(sim.stream_chat(chat(), upstream_model="ok-c2"))
        await sim.chat(chat(), upstream_model="ok")
    assert upstream.count() == 6
    assert upstream.connections == 1


async def test_legacy_completions_and_embeddings_go_to_their_paths(upstream):
    p = provider(upstream)
    completion = await p.completion({"model": "x", "prompt": "Say hi"}, upstream_model="ok-c2")
    assert completion.body["choices"][0]["text"] == "word0 word1"
    chunks = await collect(p.stream_completion({"model": "x", "prompt": "Say hi"}, upstream_model="ok-c2"))
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "word0 word1 "
    embedded = await p.embeddings({"model": "x", "input": ["a", "b"], "encoding_format": "base64"}, upstream_model="ok")
    assert [r.path for r in upstream.requests] == ["/v1/completions", "/v1/completions", "/v1/embeddings"]
    assert upstream.requests[-1].body["encoding_format"] == "float"
    assert embedded.body["data"][1]["embedding"] == [0.6, 0.8] and embedded.usage.prompt_tokens == 6
