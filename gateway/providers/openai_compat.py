"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio, …).

The client's body goes upstream as it came, fields we do not know included; only `model` is replaced
(and, for streams, usage is requested). Per chunk we parse once and look at three keys.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import orjson

from gateway.providers.base import (
    ChatResult,
    EmbeddingResult,
    GeneratedImage,
    ImageResult,
    ModerationRejected,
    ProviderConfig,
    ProviderError,
    UpstreamUsage,
    token_count,
)
from gateway.providers.base import usage_from_openai as _usage
from gateway.providers.http import client_timeout, get_session
from gateway.providers.upstream import TRANSPORT_ERRORS, post_json, stream_events, transport_error
from gateway.tokens import count_prompt_tokens, count_tokens

_DONE = b"[DONE]"
_STREAM_ONLY = ("stream", "stream_options")
DRAIN_SECONDS = 0.25


class OpenAICompatProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._base = (config.base_url or "https://api.openai.com/v1").rstrip("/")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        extra = config.options.get("headers") if config.options else None
        if isinstance(extra, dict):  # e.g. OpenRouter's HTTP-Referer, an org id
            self._headers.update(extra)
            self._stream_headers.update(extra)

    # -- non-streaming -------------------------------------------------------------------------------

    async def chat(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        return await self._call("/chat/completions", payload, upstream_model, chat=True)

    async def completion(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        return await self._call("/completions", payload, upstream_model, chat=False)

    async def _call(self, path: str, payload: dict[str, Any], upstream_model: str, *, chat: bool) -> ChatResult:
        body = {k: v for k, v in payload.items() if k not in _STREAM_ONLY}
        body["model"] = upstream_model
        obj = await post_json(self.config, self._base + path, orjson.dumps(body), self._headers)
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise ProviderError("malformed", f"{self.config.name}: upstream response has no choices", body=obj)
        usage = _usage(obj.get("usage"))
        if usage is None:  # omitted by some compatible servers, or not believable: bill what we can count
            usage = UpstreamUsage(
                prompt_tokens=count_prompt_tokens(payload), completion_tokens=_count_choices(choices, chat=chat)
            )
            obj["usage"] = _usage_dict(usage)
        return ChatResult(body=obj, usage=usage)

    async def embeddings(self, payload: dict[str, Any], *, upstream_model: str) -> EmbeddingResult:
        # Always ask for floats: EmbeddingResult carries float lists and the gateway encodes base64 itself.
        body = {**payload, "model": upstream_model, "encoding_format": "float"}
        obj = await post_json(self.config, self._base + "/embeddings", orjson.dumps(body), self._headers)
        if not isinstance(obj.get("data"), list):
            raise ProviderError("malformed", f"{self.config.name}: upstream embeddings response has no data", body=obj)
        raw_usage = obj.get("usage")
        prompt = token_count(raw_usage.get("prompt_tokens")) if isinstance(raw_usage, dict) else None
        if prompt is None:  # absent or not believable: count the input
            prompt = count_prompt_tokens({"input": payload.get("input")})
            obj["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        return EmbeddingResult(body=obj, usage=UpstreamUsage(prompt_tokens=prompt, completion_tokens=0))

    # -- images --------------------------------------------------------------------------------------

    async def images(self, payload: dict[str, Any], *, upstream_model: str) -> ImageResult:
        """POST {base}/images/generations; `url` results are downloaded here (outputs must not depend on
        upstream's links, which expire), `b64_json` ones decoded."""
        body = {**payload, "model": upstream_model}
        try:
            obj = await post_json(self.config, self._base + "/images/generations", orjson.dumps(body), self._headers)
        except ProviderError as exc:
            if exc.status == 400 and _is_moderation(exc.body):
                raise ModerationRejected(
                    f"{self.config.name}: {exc.message.split(': ', 2)[-1]}", body=exc.body
                ) from None
            raise
        data = obj.get("data")
        if not isinstance(data, list) or not data:
            raise ProviderError("malformed", f"{self.config.name}: upstream images response has no data", body=obj)
        images = []
        for item in data:
            if not isinstance(item, dict):
                raise ProviderError("malformed", f"{self.config.name}: upstream image entry is not an object")
            revised = item.get("revised_prompt") if isinstance(item.get("revised_prompt"), str) else None
            if isinstance(item.get("b64_json"), str):
                try:
                    raw = base64.b64decode(item["b64_json"], validate=True)
                except (binascii.Error, ValueError):
                    raise ProviderError("malformed", f"{self.config.name}: upstream sent invalid base64") from None
                images.append(GeneratedImage(raw, sniff_image(raw) or "image/png", revised))
            elif isinstance(item.get("url"), str):
                raw, content_type = await self._download(item["url"])
                images.append(GeneratedImage(raw, content_type, revised))
            else:
                raise ProviderError("malformed", f"{self.config.name}: upstream image has neither url nor b64_json")
        return ImageResult(images=images)

    async def _download(self, url: str) -> tuple[bytes, str]:
        if not url.startswith(("https://", "http://")):
            raise ProviderError("malformed", f"{self.config.name}: upstream image URL is not http(s)")
        try:
            async with get_session().get(url, timeout=client_timeout(self.config)) as resp:
                if resp.status >= 400:
                    raise ProviderError(
                        "http", f"{self.config.name}: fetching the image returned {resp.status}", status=502
                    )
                raw = await resp.content.read(MAX_IMAGE_BYTES + 1)
                header = resp.headers.get("Content-Type", "").split(";")[0].strip()
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.config, exc) from exc
        if len(raw) > MAX_IMAGE_BYTES:
            raise ProviderError("malformed", f"{self.config.name}: upstream image is larger than {MAX_IMAGE_BYTES}")
        content_type = sniff_image(raw)
        if content_type is None:
            raise ProviderError(
                "malformed", f"{self.config.name}: upstream image URL did not serve an image ({header})"
            )
        return raw, content_type

    # -- streaming -----------------------------------------------------------------------------------

    def stream_chat(self, payload: dict[str, Any], *, upstream_model: str) -> AsyncGenerator[dict[str, Any], None]:
        return self._stream("/chat/completions", payload, upstream_model, chat=True)

    def stream_completion(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        return self._stream("/completions", payload, upstream_model, chat=False)

    async def _stream(
        self, path: str, payload: dict[str, Any], upstream_model: str, *, chat: bool
    ) -> AsyncGenerator[dict[str, Any], None]:
        body = dict(payload)
        body["model"] = upstream_model
        body["stream"] = True
        options = payload.get("stream_options")
        body["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
        name = self.config.name
        loads = orjson.loads
        texts: list[str] = []  # what was generated, in case upstream never reports usage
        append = texts.append
        usage_seen = False
        done = False
        last: dict[str, Any] | None = None
        events = stream_events(self.config, self._base + path, orjson.dumps(body), self._stream_headers)
        async with aclosing(events):
            async for event in events:
                data = event.data
                if data == _DONE:
                    done = True
                    await _drain(events)
                    break
                if event.partial:
                    raise ProviderError("malformed", f"{name}: upstream stream was cut before [DONE]")
                try:
                    chunk = loads(data)
                except orjson.JSONDecodeError as exc:
                    raise ProviderError(
                        "malformed", f"{name}: upstream sent an invalid stream chunk ({exc})", body=data[:512]
                    ) from exc
                if type(chunk) is not dict:
                    raise ProviderError("malformed", f"{name}: upstream stream chunk is not an object")
                choices = chunk.get("choices")
                if choices is None and "error" in chunk:
                    error = chunk["error"]
                    code = error.get("code") if isinstance(error, dict) else None
                    status = code if isinstance(code, int) and 400 <= code < 600 else 502
                    message = error.get("message") if isinstance(error, dict) else str(error)
                    raise ProviderError(
                        "http", f"{name}: upstream error mid-stream: {message}", status=status, body=chunk
                    )
                if chunk.get("usage"):
                    usage_seen = True
                if choices and not usage_seen:
                    for choice in choices:
                        if chat:
                            delta = choice.get("delta")
                            if delta:
                                text = delta.get("content")
                                if text:
                                    append(text)
                                calls = delta.get("tool_calls")
                                if calls:
                                    _collect_call_text(calls, append)
                        else:
                            text = choice.get("text")
                            if text:
                                append(text)
                last = chunk
                yield chunk
        if not done:
            raise ProviderError("malformed", f"{name}: upstream stream ended before [DONE]")
        if not usage_seen:
            usage = UpstreamUsage(
                prompt_tokens=count_prompt_tokens(payload), completion_tokens=count_tokens("".join(texts))
            )
            yield _usage_chunk(last, usage, chat=chat, model=upstream_model)


async def _drain(events: AsyncGenerator[Any, None]) -> None:
    """Read the few bytes after [DONE] (the chunked-encoding terminator) so the connection can go back to
    the pool; an upstream that keeps it open longer than a moment just loses the connection."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in events:
                pass
    except (TimeoutError, ProviderError):
        pass


def _collect_call_text(calls: list[dict[str, Any]], append: Any) -> None:
    for call in calls:
        function = call.get("function")
        if function:
            if function.get("name"):
                append(function["name"])
            if function.get("arguments"):
                append(function["arguments"])


def _count_choices(choices: list[dict[str, Any]], *, chat: bool) -> int:
    texts: list[str] = []
    for choice in choices:
        if chat:
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                texts.append(message["content"])
            _collect_call_text(message.get("tool_calls") or [], texts.append)
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
    return count_tokens("".join(texts))


def _usage_dict(usage: UpstreamUsage) -> dict[str, Any]:
    prompt = usage.prompt_tokens + usage.cached_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": prompt + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _usage_chunk(last: dict[str, Any] | None, usage: UpstreamUsage, *, chat: bool, model: str) -> dict[str, Any]:
    last = last or {}
    return {
        "id": last.get("id", ""),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": last.get("created", int(time.time())),
        "model": last.get("model", model),
        "choices": [],
        "usage": _usage_dict(usage),
    }


MAX_IMAGE_BYTES = 50 * 1024 * 1024
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(raw: bytes) -> str | None:
    for magic, mime in _IMAGE_MAGIC:
        if raw.startswith(magic):
            return mime
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_moderation(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code in ("content_policy_violation", "moderation_blocked")
