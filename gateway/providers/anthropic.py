"""Anthropic's Messages API behind OpenAI's shapes, translated both ways.

Request: system/developer messages → top-level `system`; text and image parts (data: URLs → base64
source, http(s) URLs → url source) and PDF `file` parts → content blocks; assistant `tool_calls` →
`tool_use` blocks; `tool` messages → `tool_result` blocks in a user turn (consecutive turns of one role
merged, as Anthropic wants all results of a parallel call in one turn); function tools →
`input_schema` tools; tool_choice auto/none/required/specific (+ parallel_tool_calls=false);
max_tokens (default from options, 4096), stop → stop_sequences, temperature (clamped to Anthropic's
0–1), top_p, user → metadata.user_id. JSON response formats become a system instruction, since
Anthropic has no JSON mode. Fields Anthropic would reject are not forwarded.

Response: text blocks → content, tool_use → tool_calls, stop reasons → finish_reason, usage with
cache reads as cached tokens; streaming events → `chat.completion.chunk` dicts ending in a usage chunk.

`base_url` is Anthropic's root (https://api.anthropic.com) or ends in /v1; requests go to …/v1/messages.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from gateway.providers.base import (
    ChatResult,
    EmbeddingResult,
    ImageResult,
    ProviderConfig,
    ProviderError,
    UpstreamUsage,
    token_count,
)
from gateway.providers.upstream import post_json, stream_events
from gateway.tokens import count_prompt_tokens, count_tokens

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
    "model_context_window_exceeded": "length",
}
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def stream_error(event: dict[str, Any]) -> ProviderError:
    """An `error` event in an Anthropic stream as the ProviderError it stands for (whatever shape it has)."""
    error = event.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    kind = kind if isinstance(kind, str) else ""
    text = message if isinstance(message, str) and message else kind or "stream error"
    return ProviderError("http", f"anthropic: {text}", status=ERROR_STATUS.get(kind, 502), body=event)


def _bad_request(message: str) -> ProviderError:
    """The request cannot be expressed for Anthropic: the client's fault, not worth another route."""
    return ProviderError("http", message, status=400, retryable=False)


def anthropic_error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("message") or error.get("type")
    return None


# -- request ----------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a data: URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise _bad_request("image data URLs must be base64 encoded")
    return header[: -len(";base64")] or "application/octet-stream", data


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad_request("image_url.url is required")
    inline = _data_url(url)
    if inline:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad_request("image_url.url must be an http(s) or data: URL")


def _file_block(part: dict[str, Any]) -> dict[str, Any]:
    file = part.get("file") or {}
    inline = _data_url(str(file.get("file_data") or ""))
    if not inline:
        raise _bad_request("file parts need file_data as a base64 data: URL")
    media_type, data = inline
    return {"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_request("message content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part))
        elif kind == "file":
            blocks.append(_file_block(part))
        else:
            raise _bad_request(f"content part type {kind!r} is not supported by this model")
    return blocks


def _tool_use_blocks(tool_calls: list[Any]) -> list[dict[str, Any]]:
    blocks = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            value = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise _bad_request(f"tool call {call.get('id')!r} has arguments that are not valid JSON")
        if not isinstance(value, dict):
            raise _bad_request("tool call arguments must be a JSON object")
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": value})
    return blocks


def _tool_result_block(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if isinstance(content, list):
        block["content"] = _blocks(content)
    elif content:
        block["content"] = str(content)
    return block


def _response_format_instruction(response_format: Any) -> str | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "Respond with a single valid JSON object and nothing else."
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return (
            "Respond with a single JSON value, and nothing else, that is valid against this JSON schema: "
            + orjson.dumps(schema).decode()
        )
    return None


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None
    if choice is None:
        result = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad_request("tool_choice must be auto, none, required or a function")
    if result is not None and parallel is False:
        result["disable_parallel_tool_use"] = True
    return result


def to_anthropic_request(
    payload: dict[str, Any], upstream_model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """OpenAI chat request body → Anthropic Messages request body."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in payload.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text(message.get("content"))
            if text:
                system.append(text)
        elif role == "user":
            add("user", _blocks(message.get("content")))
        elif role == "assistant":
            add("assistant", _blocks(message.get("content")) + _tool_use_blocks(message.get("tool_calls") or []))
        elif role == "tool":
            add("user", [_tool_result_block(message)])
        else:
            raise _bad_request(f"message role {role!r} is not supported")
    if not turns:
        raise _bad_request("at least one user message is required")
    # A single text block stays a plain string, which is how most Anthropic examples look.
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]

    instruction = _response_format_instruction(payload.get("response_format"))
    if instruction:
        system.append(instruction)

    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = "\n\n".join(system)
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if payload.get("temperature") is not None:
        body["temperature"] = min(float(payload["temperature"]), 1.0)
    if payload.get("top_p") is not None:
        body["top_p"] = payload["top_p"]
    tools = payload.get("tools")
    if tools:
        body["tools"] = [
            {
                "name": t["function"]["name"],
                **({"description": t["function"]["description"]} if t["function"].get("description") else {}),
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
            if isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict)
        ]
    choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls")) if tools else None
    if choice is not None:
        body["tool_choice"] = choice
    if payload.get("user"):
        body["metadata"] = {"user_id": str(payload["user"])}
    return body


# -- response ---------------------------------------------------------------------------------------


def usage_from_anthropic(usage: Any) -> UpstreamUsage | None:
    """Anthropic's usage → UpstreamUsage (cache writes bill as prompt tokens, cache reads as cached ones); None
    when absent or not believable (see base.token_count)."""
    if not isinstance(usage, dict):
        return None
    counts = [
        token_count(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "output_tokens", "cache_read_input_tokens")
    ]
    if any(c is None for c in counts) or usage.get("input_tokens") is None:
        return None
    fresh, written, output, read = (c or 0 for c in counts)
    return UpstreamUsage(prompt_tokens=fresh + written, completion_tokens=output, cached_tokens=read)


def openai_usage(usage: UpstreamUsage) -> dict[str, Any]:
    prompt = usage.prompt_tokens + usage.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": prompt + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def from_anthropic_response(body: dict[str, Any], *, prompt_tokens: int = 0) -> tuple[dict[str, Any], UpstreamUsage]:
    """Anthropic Message → OpenAI chat.completion (and its usage)."""
    if body.get("type") != "message" or not isinstance(body.get("content"), list):
        raise ProviderError("malformed", "anthropic: response is not a message", body=body)
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in body["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        # thinking / redacted_thinking / server tool blocks have no OpenAI chat equivalent
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = usage_from_anthropic(body.get("usage"))
    if usage is None:  # an upstream whose usage cannot be believed: count what we can see
        usage = UpstreamUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=count_tokens(
                "".join(texts) + "".join(c["function"]["name"] + c["function"]["arguments"] for c in tool_calls)
            ),
        )
    result = {
        "id": body.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": STOP_REASONS.get(body.get("stop_reason") or "end_turn", "stop"),
            }
        ],
        "usage": openai_usage(usage),
    }
    return result, usage


class StreamTranslator:
    """Anthropic stream events → OpenAI chat.completion.chunk dicts, one event at a time."""

    __slots__ = (
        "id",
        "believable",
        "model",
        "created",
        "input_tokens",
        "cache_read",
        "cache_creation",
        "output_tokens",
        "finish_reason",
        "tool_index",
        "done",
    )

    def __init__(self, model: str) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time())
        self.input_tokens = self.cache_read = self.cache_creation = self.output_tokens = 0
        self.believable = True  # every usage count upstream sent was a plausible whole number
        self.finish_reason: str | None = None
        self.tool_index: dict[int, int] = {}  # Anthropic content block index → OpenAI tool_calls index
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _take_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        for field, attr in (
            ("input_tokens", "input_tokens"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_creation"),
            ("output_tokens", "output_tokens"),
        ):
            if usage.get(field) is not None:  # output_tokens is cumulative in message_delta
                count = token_count(usage[field])
                if count is None:
                    self.believable = False
                else:
                    setattr(self, attr, count)

    @property
    def usage(self) -> UpstreamUsage:
        return UpstreamUsage(self.input_tokens + self.cache_creation, self.output_tokens, self.cache_read)

    def feed(self, event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if dtype == "input_json_delta":
                index = self.tool_index.get(event.get("index", -1))
                if index is None:
                    raise ProviderError("malformed", "anthropic: tool input for a block that never started")
                return self._chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                )
            return None  # thinking / signature / citations deltas
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self.tool_index)
                self.tool_index[event.get("index", index)] = index
                return self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return None
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or ""
            self.model = message.get("model") or self.model
            self._take_usage(message.get("usage"))
            return self._chunk({"role": "assistant", "content": "", "refusal": None})
        if kind == "message_delta":
            self._take_usage(event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = STOP_REASONS.get(reason, "stop")
                return self._chunk({}, self.finish_reason)
            return None
        if kind == "message_stop":
            self.done = True
            return {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                # usage the pipeline cannot believe is left out: it then counts what was streamed
                "usage": openai_usage(self.usage) if self.believable else None,
            }
        if kind == "error":
            raise stream_error(event)
        return None  # ping, content_block_stop, unknown future events


class AnthropicProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        base = (config.base_url or "https://api.anthropic.com").rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        options = config.options or {}
        self._default_max_tokens = int(options.get("default_max_tokens", DEFAULT_MAX_TOKENS))
        self._headers = {
            "x-api-key": config.api_key,
            "anthropic-version": options.get("version", API_VERSION),
            "content-type": "application/json",
            "accept": "application/json",
        }
        self._stream_headers = {**self._headers, "accept": "text/event-stream"}

    def _request(self, payload: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        return to_anthropic_request(payload, upstream_model, default_max_tokens=self._default_max_tokens)

    async def chat(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        body = self._request(payload, upstream_model)
        raw = await post_json(self.config, self._url, orjson.dumps(body), self._headers, anthropic_error_message)
        result, usage = from_anthropic_response(raw, prompt_tokens=count_prompt_tokens(payload))
        return ChatResult(body=result, usage=usage)

    async def stream_chat(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        body = self._request(payload, upstream_model)
        body["stream"] = True
        translator = StreamTranslator(upstream_model)
        feed = translator.feed
        loads = orjson.loads
        events = stream_events(
            self.config, self._url, orjson.dumps(body), self._stream_headers, anthropic_error_message
        )
        async with aclosing(events):
            async for event in events:
                try:
                    data = loads(event.data)
                except orjson.JSONDecodeError as exc:
                    if event.partial:
                        break  # cut inside an event: reported below
                    raise ProviderError("malformed", f"anthropic: invalid stream event ({exc})") from exc
                chunk = feed(data)
                if chunk is not None:
                    yield chunk
                if translator.done:
                    break
        if not translator.done:
            raise ProviderError("malformed", "anthropic: stream ended before message_stop")

    # /v1/messages natively: the client's Messages body goes upstream as it came, only `model` replaced.

    def _native(self, body: dict[str, Any], upstream_model: str, beta: str | None, *, stream: bool):
        payload = {**body, "model": upstream_model}
        payload.pop("stream", None)
        if stream:
            payload["stream"] = True
        headers = self._stream_headers if stream else self._headers
        if beta:
            headers = {**headers, "anthropic-beta": beta}
        return orjson.dumps(payload), headers

    async def messages(
        self, body: dict[str, Any], *, upstream_model: str, beta: str | None = None
    ) -> tuple[dict[str, Any], UpstreamUsage | None]:
        """A Messages request as Anthropic answers it: the Message, and its usage when it is believable (None:
        count locally)."""
        data, headers = self._native(body, upstream_model, beta, stream=False)
        raw = await post_json(self.config, self._url, data, headers, anthropic_error_message)
        if raw.get("type") != "message" or not isinstance(raw.get("content"), list):
            raise ProviderError("malformed", "anthropic: response is not a message", body=raw)
        return raw, usage_from_anthropic(raw.get("usage"))

    async def stream_messages(
        self, body: dict[str, Any], *, upstream_model: str, beta: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Anthropic's stream events as it sends them (dicts); an `error` event raises ProviderError."""
        data, headers = self._native(body, upstream_model, beta, stream=True)
        events = stream_events(self.config, self._url, data, headers, anthropic_error_message)
        stopped = False
        async with aclosing(events):
            async for event in events:
                try:
                    item = orjson.loads(event.data)
                except orjson.JSONDecodeError as exc:
                    if event.partial:
                        break
                    raise ProviderError("malformed", f"anthropic: invalid stream event ({exc})") from exc
                if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                    raise ProviderError("malformed", "anthropic: stream event without a type")
                if item["type"] == "error":
                    raise stream_error(item)
                yield item
                if item["type"] == "message_stop":
                    stopped = True
                    break
        if not stopped:
            raise ProviderError("malformed", "anthropic: stream ended before message_stop")

    # Legacy completions ride on Messages: the prompt becomes one user turn.

    @staticmethod
    def _as_chat(payload: dict[str, Any]) -> dict[str, Any]:
        prompt = payload.get("prompt", "")
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise _bad_request("this model takes a single text prompt")
            prompt = prompt[0]
        chat = {k: v for k, v in payload.items() if k in ("max_tokens", "stop", "temperature", "top_p", "user")}
        chat["messages"] = [{"role": "user", "content": str(prompt)}]
        return chat

    async def completion(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        result = await self.chat(self._as_chat(payload), upstream_model=upstream_model)
        choice = result.body["choices"][0]
        result.body = {
            **result.body,
            "object": "text_completion",
            "choices": [
                {
                    "text": choice["message"]["content"] or "",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": choice["finish_reason"],
                }
            ],
        }
        return result

    async def stream_completion(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        stream = self.stream_chat(self._as_chat(payload), upstream_model=upstream_model)
        async with aclosing(stream):
            async for chunk in stream:
                choices = []
                for choice in chunk["choices"]:
                    text = choice["delta"].get("content")
                    if text or choice["finish_reason"]:
                        choices.append(
                            {"text": text or "", "index": 0, "logprobs": None, "finish_reason": choice["finish_reason"]}
                        )
                if choices or "usage" in chunk:
                    yield {**chunk, "object": "text_completion", "choices": choices}

    async def embeddings(self, payload: dict[str, Any], *, upstream_model: str) -> EmbeddingResult:
        raise _bad_request("Anthropic does not offer embeddings; route this model to another provider")

    async def images(self, payload: dict[str, Any], *, upstream_model: str) -> ImageResult:
        raise _bad_request("Anthropic does not generate images; route this model to another provider")
