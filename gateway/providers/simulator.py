"""The built-in simulator: an OpenAI-shaped model with no network, for test keys, the demo and CI.

Everything is derived from the request, so the same request always gets the same reply:
- the reply quotes the start of the last user message (`You said: "…"`) and goes on with words from
  a fixed vocabulary picked by a hash of the conversation; a user message starting with `echo:` is
  answered with exactly the text after it (handy for tests of stop sequences and token counting);
- after a tool result the reply summarises it; with `tools` (and tool_choice not "none") it calls a
  tool, arguments generated from the tool's JSON schema;
- `response_format` json_object / json_schema → valid JSON (schema-valid for json_schema);
- `reasoning_effort` makes it "think" first: low 16, medium 64, high 256 tokens (at most half of
  `max_tokens`), billed as completion tokens and reported as completion_tokens_details.reasoning_tokens;
- `max_tokens` / `max_completion_tokens` cut the output (finish_reason "length"), `stop` cuts at the
  first stop sequence; token counts come from gateway.tokens, so usage is exact for our tokenizer;
- embeddings are bag-of-words unit vectors: the same text always gets the same vector and texts
  sharing words point the same way; a multimodal input (a list of text and image_url parts) is one vector,
  the normalised sum of its text's vector and one per image (derived from the image's bytes, or its URL);
- images are real PNGs of the requested size, drawn (Pillow) from a hash of the prompt, size and index: the
  same request always gets the same bytes; a prompt containing one of the blocked words is refused
  (ModerationRejected);
- options: `latency_ms` (time to first token) and `tokens_per_second` (0 = instant), defaulting to
  settings.SIMULATOR_LATENCY_MS / SIMULATOR_TOKENS_PER_SECOND; `dimensions` (default 256); `image_latency_ms`
  (how long an image takes, default settings.SIMULATOR_IMAGE_LATENCY_MS) and `blocked_words` (default
  settings.SIMULATOR_BLOCKED_WORDS).
- option `scenario` (a test key's Tollgate-Test-Scenario, set by gateway/scenarios.py): the simulator fails the
  way a real upstream does, raising the ProviderError an HTTP provider raises for it, so routing, fallback and
  settlement run their real course: `upstream_error` (a 500, before any output), `timeout` (no answer for
  SCENARIO_TIMEOUT_SECONDS, then a timeout), `stream_cut` (a stream whose connection breaks after
  STREAM_CUT_AFTER_CHUNKS chunks of output; a plain answer whose body is cut short), `slow` (paced tokens).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import random
import re
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from functools import lru_cache
from hashlib import blake2b
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
)
from gateway.providers.schema_values import value_for_schema
from gateway.tokens import IMAGE_TOKENS, count_prompt_tokens, count_tokens, tokenize

VOCABULARY = (
    "the",
    "gateway",
    "routes",
    "every",
    "request",
    "to",
    "a",
    "model",
    "that",
    "answers",
    "quickly",
    "and",
    "tokens",
    "flow",
    "through",
    "quiet",
    "streams",
    "of",
    "light",
    "while",
    "ledgers",
    "balance",
    "each",
    "receipt",
    "with",
    "care",
    "simulated",
    "replies",
    "stay",
    "deterministic",
    "so",
    "tests",
    "can",
    "trust",
    "them",
    "bright",
    "rivers",
    "carry",
    "small",
    "boats",
    "across",
    "calm",
    "water",
    "under",
    "open",
    "sky",
    "engineers",
    "measure",
    "latency",
    "before",
    "they",
    "guess",
    "clear",
    "numbers",
    "beat",
    "loud",
    "opinions",
    "in",
    "the",
    "end",
    "useful",
    "systems",
    "are",
    "simple",
    "ones",
    "built",
    "patiently",
)
# Test scenarios (see the module docstring): short enough for a test suite, long enough to be seen.
SCENARIO_TIMEOUT_SECONDS = 1.0
STREAM_CUT_AFTER_CHUNKS = 3
SLOW_LATENCY_MS = 400
SLOW_TOKENS_PER_SECOND = 25
DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 8192
SNIPPET_WORDS = 12
FINGERPRINT = "fp_tollgate_sim"
_WORDS = re.compile(r"\w+")


@dataclass(slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: list[str]  # token pieces of the JSON arguments (cut when max_tokens ran out)


@dataclass(slots=True)
class _Reply:
    pieces: list[str] = field(default_factory=list)  # token pieces of the text content
    tool_calls: list[_ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    completion_tokens: int = 0  # reasoning included
    reasoning_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _seeded(*parts: Any) -> tuple[random.Random, str]:
    digest = blake2b(orjson.dumps(parts, default=str, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()
    return random.Random(int.from_bytes(digest[:8], "big")), digest.hex()


def _text_of(content: Any) -> tuple[str, int]:
    """(text, number of images) of a message's content."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts, images = [], 0
    for part in content:
        if isinstance(part, dict):
            if part.get("type") == "text":
                texts.append(str(part.get("text") or ""))
            elif part.get("type") in ("image_url", "input_image", "image"):
                images += 1
        elif isinstance(part, str):
            texts.append(part)
    return " ".join(texts), images


def _snippet(text: str) -> str:
    words = text.split()
    snippet = " ".join(words[:SNIPPET_WORDS])
    return snippet + ("…" if len(words) > SNIPPET_WORDS else "")


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + "."


def _stop_list(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def _apply_limits(text: str, stop: list[str], max_tokens: int | None) -> _Reply:
    finish = "stop"
    if stop:
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
    pieces = tokenize(text)
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces = pieces[:max_tokens]
        finish = "length"
    return _Reply(pieces=pieces, finish_reason=finish, completion_tokens=len(pieces))


def _max_tokens(payload: dict[str, Any]) -> int | None:
    value = payload.get("max_completion_tokens")
    if value is None:
        value = payload.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProviderError("http", "max_tokens must be a non-negative integer", status=400)
    return value


def _function_tools(payload: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for tool in payload.get("tools") or ():
        if (
            isinstance(tool, dict)
            and tool.get("type", "function") == "function"
            and isinstance(tool.get("function"), dict)
            and tool["function"].get("name")
        ):
            out.append(tool["function"])
    return out


def _chosen_tool(
    payload: dict[str, Any], tools: list[dict[str, Any]], last_role: str, rng: random.Random
) -> dict[str, Any] | None:
    if not tools:
        return None
    choice = payload.get("tool_choice", "auto")
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        return next((t for t in tools if t["name"] == name), None)
    if choice == "required":
        return rng.choice(tools)
    # "auto": call a tool when the user just spoke; after a tool result, answer in words
    return rng.choice(tools) if last_role == "user" else None


REASONING_TOKENS = {"minimal": 0, "low": 16, "medium": 64, "high": 256, "xhigh": 512}


def _plan_chat(payload: dict[str, Any]) -> tuple[_Reply, str]:
    """The reply, with the tokens spent reasoning (reasoning_effort) counted in, before the answer's budget."""
    effort = payload.get("reasoning_effort")
    reasoning = REASONING_TOKENS.get(effort, 0) if isinstance(effort, str) else 0
    max_tokens = _max_tokens(payload)
    if max_tokens is not None:
        reasoning = min(reasoning, max_tokens // 2)
    if reasoning:
        budget = {k: v for k, v in payload.items() if k not in ("max_tokens", "max_completion_tokens")}
        if max_tokens is not None:
            budget["max_tokens"] = max_tokens - reasoning
        reply, digest = _plan_answer(budget)
        reply.reasoning_tokens = reasoning
        reply.completion_tokens += reasoning
        return reply, digest
    return _plan_answer(payload)


def _plan_answer(payload: dict[str, Any]) -> tuple[_Reply, str]:
    messages = payload.get("messages") or []
    rng, digest = _seeded(
        messages, payload.get("seed"), payload.get("tools"), payload.get("tool_choice"), payload.get("response_format")
    )
    max_tokens = _max_tokens(payload)
    stop = _stop_list(payload.get("stop"))
    last = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") != "system"), {})
    last_role = last.get("role", "user")
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), {})
    user_text, images = _text_of(last_user.get("content"))

    tool = _chosen_tool(payload, _function_tools(payload), last_role, rng)
    if tool is not None:
        arguments = orjson.dumps(value_for_schema(tool.get("parameters") or {"type": "object"}, rng)).decode()
        name_tokens = count_tokens(tool["name"])
        pieces = tokenize(arguments)
        reply = _Reply(finish_reason="tool_calls")
        if max_tokens is not None and name_tokens + len(pieces) > max_tokens:
            pieces = pieces[: max(0, max_tokens - name_tokens)]
            reply.finish_reason = "length"
        reply.tool_calls.append(_ToolCall(id=f"call_{digest[:24]}", name=tool["name"], arguments=pieces))
        reply.completion_tokens = name_tokens + len(pieces)
        return reply, digest

    stripped = user_text.lstrip()
    if last_role == "user" and stripped[:5].lower() == "echo:":
        text = stripped[5:].removeprefix(" ")
    elif last_role == "tool":
        tool_text, _ = _text_of(last.get("content"))
        text = f'The tool returned "{_snippet(tool_text)}". {_sentence(rng, 8, 20)}'
    else:
        seen = f" I see {images} image{'s' if images != 1 else ''}." if images else ""
        text = f'You said: "{_snippet(user_text) or "nothing"}".{seen} {_sentence(rng, 12, 40)}'

    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema" and isinstance(response_format, dict):
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        text = orjson.dumps(value_for_schema(schema or {"type": "object"}, rng)).decode()
    elif kind == "json_object":
        text = orjson.dumps({"reply": text, "words": [rng.choice(VOCABULARY) for _ in range(3)]}).decode()
    return _apply_limits(text, stop, max_tokens), digest


def _plan_completion(prompt: str, payload: dict[str, Any], index: int) -> _Reply:
    rng, _ = _seeded(prompt, payload.get("seed"), index)
    stripped = prompt.lstrip()
    text = stripped[5:].removeprefix(" ") if stripped[:5].lower() == "echo:" else " " + _sentence(rng, 12, 40)
    reply = _apply_limits(
        text, _stop_list(payload.get("stop")), _max_tokens(payload) if "max_tokens" in payload else 16
    )  # /v1/completions defaults to 16 tokens, like OpenAI
    if payload.get("echo"):
        reply.pieces.insert(0, prompt)  # echoed prompt is not completion
    return reply


def _prompts(payload: dict[str, Any]) -> list[str]:
    prompt = payload.get("prompt", "")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if prompt and all(isinstance(p, int) for p in prompt):
            return [" ".join(map(str, prompt))]
        return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt] or [""]
    return [str(prompt)]


def _usage(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _chunk_sizes(rng: random.Random, count: int) -> list[int]:
    """Stream content one to three token pieces at a time, like real models do."""
    sizes = []
    while count > 0:
        size = min(count, rng.choice((1, 1, 2, 3)))
        sizes.append(size)
        count -= size
    return sizes


def _has_output(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta")
    if delta is not None:
        return bool(delta.get("content") or delta.get("tool_calls"))
    return bool(choice.get("text"))


@lru_cache(maxsize=16384)
def _word_vector(word: str, dimensions: int) -> tuple[float, ...]:
    rng = random.Random(int.from_bytes(blake2b(word.encode(), digest_size=8).digest(), "big"))
    gauss = rng.gauss
    return tuple(gauss(0.0, 1.0) for _ in range(dimensions))


def embed_text(text: str, dimensions: int) -> list[float]:
    """A unit vector for `text`: the sum of its words' vectors, so related texts land near each other."""
    counts = Counter(w.lower() for w in _WORDS.findall(text)) or Counter({text: 1})
    vector = [0.0] * dimensions
    for word, count in counts.items():
        for i, x in enumerate(_word_vector(word, dimensions)):
            vector[i] += x * count
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class SimulatorProvider:
    def __init__(self, config: ProviderConfig) -> None:
        from django.conf import settings

        options = config.options or {}
        self.config = config
        self.latency_s = float(options.get("latency_ms", settings.SIMULATOR_LATENCY_MS) or 0) / 1000
        self.tokens_per_second = float(options.get("tokens_per_second", settings.SIMULATOR_TOKENS_PER_SECOND) or 0)
        self.default_dimensions = int(options.get("dimensions", DEFAULT_DIMENSIONS))
        self.image_latency_s = float(options.get("image_latency_ms", settings.SIMULATOR_IMAGE_LATENCY_MS) or 0) / 1000
        blocked = options.get("blocked_words", settings.SIMULATOR_BLOCKED_WORDS)
        if isinstance(blocked, str):
            blocked = blocked.split(",")
        self.blocked_words = frozenset(str(w).strip().lower() for w in blocked or () if str(w).strip())
        self.scenario = str(options.get("scenario") or "")
        if self.scenario == "slow":
            self.latency_s, self.tokens_per_second = SLOW_LATENCY_MS / 1000, float(SLOW_TOKENS_PER_SECOND)

    # -- test scenarios -----------------------------------------------------------------------------

    async def _fail_first(self) -> None:
        """A scenario that fails before any output, as an upstream that errors, hangs or cuts its body short."""
        if self.scenario == "upstream_error":
            raise ProviderError(
                "http",
                "simulator: upstream answered 500 Internal Server Error (test scenario upstream_error)",
                status=500,
            )
        if self.scenario == "timeout":
            await asyncio.sleep(SCENARIO_TIMEOUT_SECONDS)
            raise ProviderError(
                "timeout", f"simulator: no answer within {SCENARIO_TIMEOUT_SECONDS:g} s (test scenario timeout)"
            )

    async def _fail_plain(self) -> None:
        await self._fail_first()
        if self.scenario == "stream_cut":  # a plain answer cannot break mid-way: its body arrives cut short
            raise ProviderError("malformed", "simulator: the response body was cut short (test scenario stream_cut)")

    async def _play(self, inner: AsyncGenerator[dict[str, Any], None]) -> AsyncGenerator[dict[str, Any], None]:
        """`inner` as the scenario has it: failing before the first chunk, or breaking after a few chunks of
        output (never reaching the finish chunk or the usage, like a connection that drops)."""
        try:
            await self._fail_first()
            produced = 0
            async for chunk in inner:
                if self.scenario == "stream_cut":
                    choices = chunk.get("choices") or ()
                    ends = not choices or any(c.get("finish_reason") for c in choices)
                    if ends or produced >= STREAM_CUT_AFTER_CHUNKS:
                        raise ProviderError(
                            "malformed",
                            "simulator: the upstream connection broke mid-stream (test scenario stream_cut)",
                        )
                    if any(_has_output(c) for c in choices):
                        produced += 1
                yield chunk
        finally:
            await inner.aclose()

    async def _pause(self, tokens: int, *, first: bool = False) -> None:
        delay = (self.latency_s if first else 0.0) + (
            tokens / self.tokens_per_second if self.tokens_per_second else 0.0
        )
        if delay > 0:
            await asyncio.sleep(delay)

    # -- chat ---------------------------------------------------------------------------------------

    async def chat(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        if self.scenario:
            await self._fail_plain()
        reply, digest = _plan_chat(payload)
        prompt_tokens = count_prompt_tokens(payload)
        await self._pause(reply.completion_tokens, first=True)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if not reply.tool_calls else None,
            "refusal": None,
        }
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": "".join(c.arguments)}}
                for c in reply.tool_calls
            ]
        body = {
            "id": f"chatcmpl-{digest[:29]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": upstream_model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": _usage(prompt_tokens, reply.completion_tokens, reply.reasoning_tokens),
        }
        return ChatResult(body=body, usage=UpstreamUsage(prompt_tokens, reply.completion_tokens))

    def stream_chat(self, payload: dict[str, Any], *, upstream_model: str) -> AsyncGenerator[dict[str, Any], None]:
        inner = self._stream_chat(payload, upstream_model=upstream_model)
        return self._play(inner) if self.scenario else inner

    async def _stream_chat(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        reply, digest = _plan_chat(payload)
        prompt_tokens = count_prompt_tokens(payload)
        rng = random.Random(digest)
        base = {
            "id": f"chatcmpl-{digest[:29]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": upstream_model,
            "system_fingerprint": FINGERPRINT,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        await self._pause(reply.reasoning_tokens, first=True)  # thinking delays the first token
        yield chunk({"role": "assistant", "content": None if reply.tool_calls else "", "refusal": None})
        if reply.tool_calls:
            for index, call in enumerate(reply.tool_calls):
                await self._pause(count_tokens(call.name))
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call.id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
                position = 0
                for size in _chunk_sizes(rng, len(call.arguments)):
                    await self._pause(size)
                    fragment = "".join(call.arguments[position : position + size])
                    position += size
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
        else:
            pieces = reply.pieces
            position = 0
            for size in _chunk_sizes(rng, len(pieces)):
                await self._pause(size)
                yield chunk({"content": "".join(pieces[position : position + size])})
                position += size
        yield chunk({}, reply.finish_reason)
        yield {**base, "choices": [], "usage": _usage(prompt_tokens, reply.completion_tokens, reply.reasoning_tokens)}

    # -- legacy completions -------------------------------------------------------------------------

    async def completion(self, payload: dict[str, Any], *, upstream_model: str) -> ChatResult:
        if self.scenario:
            await self._fail_plain()
        replies = [_plan_completion(p, payload, i) for i, p in enumerate(_prompts(payload))]
        completion_tokens = sum(r.completion_tokens for r in replies)
        prompt_tokens = count_prompt_tokens({"prompt": payload.get("prompt", "")})
        await self._pause(completion_tokens, first=True)
        _, digest = _seeded(payload.get("prompt"), payload.get("seed"))
        body = {
            "id": f"cmpl-{digest[:29]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": upstream_model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {"text": r.text, "index": i, "logprobs": None, "finish_reason": r.finish_reason}
                for i, r in enumerate(replies)
            ],
            "usage": _usage(prompt_tokens, completion_tokens),
        }
        return ChatResult(body=body, usage=UpstreamUsage(prompt_tokens, completion_tokens))

    def stream_completion(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        inner = self._stream_completion(payload, upstream_model=upstream_model)
        return self._play(inner) if self.scenario else inner

    async def _stream_completion(
        self, payload: dict[str, Any], *, upstream_model: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        replies = [_plan_completion(p, payload, i) for i, p in enumerate(_prompts(payload))]
        prompt_tokens = count_prompt_tokens({"prompt": payload.get("prompt", "")})
        rng, digest = _seeded(payload.get("prompt"), payload.get("seed"))
        base = {
            "id": f"cmpl-{digest[:29]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": upstream_model,
            "system_fingerprint": FINGERPRINT,
        }
        await self._pause(0, first=True)
        for index, reply in enumerate(replies):
            pieces = reply.pieces
            position = 0
            for size in _chunk_sizes(rng, len(pieces)):
                await self._pause(size)
                text = "".join(pieces[position : position + size])
                position += size
                yield {**base, "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": None}]}
            yield {
                **base,
                "choices": [{"text": "", "index": index, "logprobs": None, "finish_reason": reply.finish_reason}],
            }
        completion_tokens = sum(r.completion_tokens for r in replies)
        yield {**base, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)}

    # -- embeddings ---------------------------------------------------------------------------------

    async def embeddings(self, payload: dict[str, Any], *, upstream_model: str) -> EmbeddingResult:
        if self.scenario:
            await self._fail_plain()
        dimensions = payload.get("dimensions")
        if dimensions is None:
            dimensions = self.default_dimensions
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= MAX_DIMENSIONS:
            raise ProviderError("http", f"dimensions must be an integer from 1 to {MAX_DIMENSIONS}", status=400)
        raw = payload.get("input")
        if isinstance(raw, list) and raw and all(isinstance(x, dict) for x in raw):
            return await self._embed_parts(raw, dimensions, upstream_model)
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
            inputs = [raw]
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            raise ProviderError("http", "input must be a non-empty string or list", status=400)
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
        prompt_tokens = count_prompt_tokens({"input": raw})
        await self._pause(0, first=True)
        data = [
            {"object": "embedding", "index": i, "embedding": embed_text(text, dimensions)}
            for i, text in enumerate(texts)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": upstream_model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return EmbeddingResult(body=body, usage=UpstreamUsage(prompt_tokens, 0))

    async def _embed_parts(self, parts: list[dict[str, Any]], dimensions: int, upstream_model: str) -> EmbeddingResult:
        vector = [0.0] * dimensions
        images = 0
        texts = []
        for part in parts:
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "image_url" and isinstance((part.get("image_url") or {}).get("url"), str):
                images += 1
                for i, x in enumerate(image_vector(part["image_url"]["url"], dimensions)):
                    vector[i] += x
            else:
                raise ProviderError("http", "input parts must be text or image_url", status=400)
        if texts:
            for i, x in enumerate(embed_text(" ".join(texts), dimensions)):
                vector[i] += x
        norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
        prompt_tokens = count_tokens(" ".join(texts)) + images * IMAGE_TOKENS
        await self._pause(0, first=True)
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [x / norm for x in vector]}],
            "model": upstream_model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }
        return EmbeddingResult(body=body, usage=UpstreamUsage(prompt_tokens, 0))

    # -- images -------------------------------------------------------------------------------------

    async def images(self, payload: dict[str, Any], *, upstream_model: str) -> ImageResult:
        from gateway.image_pricing import dimensions

        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ProviderError("http", "prompt must be a non-empty string", status=400)
        blocked = sorted({w.lower() for w in _WORDS.findall(prompt)} & self.blocked_words)
        if blocked:
            raise ModerationRejected(f"Your prompt was rejected by the content policy (it contains '{blocked[0]}').")
        n = payload.get("n") or 1
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_IMAGES:
            raise ProviderError("http", f"n must be an integer from 1 to {MAX_IMAGES}", status=400)
        size = str(payload.get("size") or "1024x1024")
        width, height = dimensions(size)
        if width * height > MAX_IMAGE_PIXELS:
            raise ProviderError("http", f"size {size} is larger than the simulator draws", status=400)
        if self.image_latency_s:
            await asyncio.sleep(self.image_latency_s)
        # Drawing is CPU work of tens of milliseconds per image: off the event loop.
        images = await asyncio.to_thread(
            lambda: [render_png(prompt, width, height, index=i, style=payload.get("style")) for i in range(n)]
        )
        return ImageResult(images=[GeneratedImage(data, "image/png", revised_prompt=prompt) for data in images])


MAX_IMAGES = 10
MAX_IMAGE_PIXELS = 4096 * 4096


def render_png(prompt: str, width: int, height: int, *, index: int = 0, style: str | None = None) -> bytes:
    """A deterministic picture of the prompt: a two-colour gradient, a few shapes and the prompt's first words,
    all chosen by a hash of (prompt, size, index, style). Same arguments, same bytes."""
    import io
    import textwrap

    from PIL import Image, ImageDraw, ImageFont, ImageOps

    rng, _digest = _seeded("image", prompt, width, height, index, style)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    gradient = Image.linear_gradient("L").resize((width, height)).rotate(rng.choice((0, 90, 180, 270)))
    image = ImageOps.colorize(gradient.resize((width, height)), colour(), colour()).convert("RGB")
    draw = ImageDraw.Draw(image)
    unit = max(8, min(width, height) // 6)
    for _ in range(3 + rng.randrange(5)):
        x, y = rng.randrange(width), rng.randrange(height)
        r = unit // 2 + rng.randrange(unit)
        box = (x - r, y - r, x + r, y + r)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour())
        else:
            draw.rectangle(box, fill=colour())
    font_size = max(10, min(width, height) // 18)
    font = ImageFont.load_default(size=font_size)
    lines = textwrap.wrap(" ".join(prompt.split()[:24]), width=max(8, width // (font_size * 3 // 5)))[:4]
    if lines:
        pad = font_size // 2
        top = height - pad - len(lines) * (font_size + 4) - pad
        draw.rectangle((0, top, width, height), fill=(16, 16, 24))
        for i, line in enumerate(lines):
            draw.text((pad, top + pad + i * (font_size + 4)), line, fill=(240, 240, 240), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def image_vector(url: str, dimensions: int) -> list[float]:
    """A unit vector standing for an image: from its bytes when inline (data: URL), else from its URL (the
    simulator fetches nothing)."""
    if url.startswith("data:"):
        try:
            seed = base64.b64decode(url.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise ProviderError("http", "image data URL is not valid base64", status=400) from None
    else:
        seed = url.encode()
    rng = random.Random(int.from_bytes(blake2b(seed, digest_size=8).digest(), "big"))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
