"""Anthropic's Messages API (POST /v1/messages): its request shape, and its translation onto chat completions and
back, the inverse of gateway/providers/anthropic.py (which turns chat requests into Messages requests).

Request → chat: `system` (a string or text blocks) → a system message; text and image blocks (base64 → data: URL,
url → the URL) → content parts; base64 PDF documents → `file` parts; assistant `tool_use` blocks → `tool_calls`;
`tool_result` blocks → `tool` messages (before the rest of their user turn, as chat wants them right after the
calls); client tools → function tools; tool_choice auto/any/tool/none (+ disable_parallel_tool_use) → auto /
required / a named function / none (+ parallel_tool_calls=false); max_tokens, stop_sequences → stop, temperature,
top_p, metadata.user_id → user. `top_k` and `thinking` have no chat equivalent and are not forwarded; thinking
blocks of earlier turns are dropped.

Chat → Message: content → a text block, tool calls → tool_use blocks (arguments parsed into `input`),
finish_reason → stop_reason; streams: chat chunks → message_start, ping, content_block_start / _delta (text_delta,
input_json_delta) / _stop, message_delta (stop reason, usage) and message_stop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from billing.models import Receipt
from billing.money import json_number
from config.errors import ApiError

# --- the request ----------------------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. cache_control, citations: passed on natively


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str = Field(min_length=1)


class UrlSource(_Open):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class TextSource(_Open):
    type: Literal["text"]
    media_type: str = "text/plain"
    data: str


class ImageBlock(_Open):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]


class DocumentBlock(_Open):
    type: Literal["document"]
    source: Annotated[Base64Source | UrlSource | TextSource, Field(discriminator="type")]
    title: str | None = None


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


ResultContent = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultContent] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Open):
    type: Literal["thinking", "redacted_thinking"]


Block = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(_Open):
    """A client tool (`type` absent or "custom"); Anthropic's server tools (web search, code execution …) have
    no chat equivalent and are refused on translated routes."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a name")
        return self


class Metadata(_Open):
    user_id: str | None = Field(default=None, max_length=256)


class _MessagesBody(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: Metadata | None = None

    @model_validator(mode="after")
    def _choice_needs_tools(self) -> _MessagesBody:
        if self.tool_choice and self.tool_choice.type in ("any", "tool") and not self.tools:
            raise ValueError("tool_choice requires tools")
        if (
            self.tool_choice
            and self.tool_choice.type == "tool"
            and self.tools
            and self.tool_choice.name not in {t.name for t in self.tools}
        ):
            raise ValueError(f"tool_choice names '{self.tool_choice.name}', which is not among the tools")
        return self


class MessagesRequest(_MessagesBody):
    max_tokens: int = Field(ge=1)  # required, as Anthropic's
    stream: bool | None = False


class CountTokensRequest(_MessagesBody):
    """POST /v1/messages/count_tokens: the same body without max_tokens (or stream)."""


# --- request → chat ---------------------------------------------------------------------------------------


def _refuse(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param)


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    return "\n\n".join(block["text"] for block in system or () if block.get("text"))


def _image_part(source: dict[str, Any]) -> dict[str, Any]:
    if source["type"] == "base64":
        return {"type": "image_url", "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"}}
    return {"type": "image_url", "image_url": {"url": source["url"]}}


def _document_part(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block["source"]
    if source["type"] == "text":
        title = block.get("title")
        return {"type": "text", "text": f"[{title}]\n{source['data']}" if title else source["data"]}
    if source["type"] == "base64":
        name = block.get("title") or "document.pdf"
        return {
            "type": "file",
            "file": {"filename": name, "file_data": f"data:{source['media_type']};base64,{source['data']}"},
        }
    return None  # by URL: only Anthropic fetches it (see untranslatable)


def _result_text(content: Any) -> tuple[str, list[dict[str, Any]]]:
    """A tool_result's content → (its text, its images as chat parts)."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts = [block["text"] for block in content if block["type"] == "text"]
    images = [_image_part(block["source"]) for block in content if block["type"] == "image"]
    return "\n".join(texts), images


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": orjson.dumps(block.get("input") or {}).decode()},
    }


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A validated Messages request body → an OpenAI chat request body (no `stream`: the provider decides)."""
    messages: list[dict[str, Any]] = []
    system = _system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        param = f"messages.{i}.content"
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        if message["role"] == "assistant":
            text = "".join(block["text"] for block in content if block["type"] == "text")
            calls = [_tool_call(block) for block in content if block["type"] == "tool_use"]
            out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            kind = block["type"]
            if kind == "tool_result":
                text, images = _result_text(block.get("content"))
                if block.get("is_error"):
                    text = f"Error: {text}" if text else "Error"
                messages.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
                parts.extend(images)  # chat tool messages carry text only: their images follow in the user turn
            elif kind == "text":
                parts.append({"type": "text", "text": block["text"]})
            elif kind == "image":
                parts.append(_image_part(block["source"]))
            elif kind == "document":
                part = _document_part(block)
                if part is not None:
                    parts.append(part)
            elif kind == "tool_use":
                raise _refuse("tool_use blocks belong in assistant turns.", f"{param}.{j}")
            # thinking blocks of earlier turns: nothing to send
        if parts:
            messages.append({"role": "user", "content": parts})
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if body.get("max_tokens") is not None:
        chat["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        chat["stop"] = list(body["stop_sequences"])
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = body[name]
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        chat["user"] = user
    tools = [tool for tool in body.get("tools") or () if tool.get("type") in (None, "custom")]
    if tools:
        chat["tools"] = []
        for tool in tools:
            function: dict[str, Any] = {
                "name": tool["name"],
                "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
            }
            if tool.get("description"):
                function["description"] = tool["description"]
            chat["tools"].append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice:
        kind = choice["type"]
        chat["tool_choice"] = (
            {"type": "function", "function": {"name": choice["name"]}}
            if kind == "tool"
            else {"auto": "auto", "any": "required", "none": "none"}[kind]
        )
        if choice.get("disable_parallel_tool_use") and tools:
            chat["parallel_tool_calls"] = False
    if not tools:
        chat.pop("tool_choice", None)
    return chat


def untranslatable(body: dict[str, Any]) -> str | None:
    """What in a Messages request only Anthropic itself can serve (its server tools, documents by URL), for
    routes that get the chat translation; None when everything translates."""
    for tool in body.get("tools") or ():
        if tool.get("type") not in (None, "custom"):
            return f"The server tool '{tool.get('type')}' is only available on Anthropic models."
    for message in body.get("messages") or ():
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "document" and (block.get("source") or {}).get("type") == "url":
                return "Documents by URL are only supported on Anthropic models; send the document base64."
    return None


def has_images(body: dict[str, Any]) -> bool:
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "image":
                    return True
                if (
                    block.get("type") == "tool_result"
                    and isinstance(block.get("content"), list)
                    and any(part.get("type") == "image" for part in block["content"])
                ):
                    return True
    return False


# --- chat → Message -------------------------------------------------------------------------------------

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's `input` object ({} when upstream cut or garbled them)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def message_from_chat(completion: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat.completion → an Anthropic Message (without id, model and usage, which the caller sets)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append({"type": "text", "text": message["refusal"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    return {
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
    }


def produced_text(message: dict[str, Any]) -> str:
    """What a Message produced, as text to count when upstream's usage cannot be believed."""
    pieces = []
    for block in message.get("content") or ():
        if block.get("type") == "text":
            pieces.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            pieces.append((block.get("name") or "") + orjson.dumps(block.get("input") or {}).decode())
    return "".join(pieces)


def usage_block(receipt: Receipt) -> dict[str, Any]:
    """Anthropic's usage object, from the receipt, plus Tollgate's exact costs. Cache writes are billed (and shown)
    as input tokens; cache reads as cache_read_input_tokens."""
    return {
        "input_tokens": receipt.prompt_tokens,
        "output_tokens": receipt.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": receipt.cached_tokens,
        "input_cost_usd": json_number(receipt.input_cost_nusd),
        "output_cost_usd": json_number(receipt.output_cost_nusd),
        "total_cost_usd": json_number(receipt.total_cost_nusd),
        "latency_ms": receipt.latency_ms,
        "ttft_ms": receipt.ttft_ms,
        "receipt_id": receipt.public_id,
    }


# --- chat chunks → Message stream events ----------------------------------------------------------------


class ChatToEvents:
    """OpenAI chat.completion.chunk dicts → Anthropic stream event dicts, one chunk at a time (`feed`), then
    `finish()` once upstream has ended: the last block's stop, message_delta (with upstream's usage in
    Anthropic's terms, if it reported any) and message_stop."""

    def __init__(self, *, model: str, input_tokens: int) -> None:
        self.model = model
        self.input_tokens = input_tokens
        self.started = False
        self.index = -1  # the open content block
        self.open_kind: str | None = None  # "text" | "tool_use"
        self.tools: dict[int, int] = {}  # chat tool_calls index → content block index
        self.stop_reason = "end_turn"
        self.usage: dict[str, Any] | None = None

    def _start(self) -> list[dict[str, Any]]:
        self.started = True
        message: dict[str, Any] = {
            "id": "",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _close(self) -> list[dict[str, Any]]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [{"type": "content_block_stop", "index": self.index}]

    def _open(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.index += 1
        self.open_kind = block["type"]
        events.append({"type": "content_block_start", "index": self.index, "content_block": block})
        return events

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events = [] if self.started else self._start()
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                if self.open_kind != "text":
                    events += self._open({"type": "text", "text": ""})
                events.append(
                    {"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": text}}
                )
            for call in delta.get("tool_calls") or ():
                position = call.get("index", 0)
                function = call.get("function") or {}
                if position not in self.tools:
                    block = {"type": "tool_use", "id": call.get("id") or "", "name": function.get("name") or ""}
                    events += self._open({**block, "input": {}})
                    self.tools[position] = self.index
                arguments = function.get("arguments")
                if arguments:
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": self.tools[position],
                            "delta": {"type": "input_json_delta", "partial_json": arguments},
                        }
                    )
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[dict[str, Any]]:
        events = ([] if self.started else self._start()) + self._close()
        usage: dict[str, Any] = {}
        if self.usage is not None:
            details = self.usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            prompt = self.usage.get("prompt_tokens")
            if isinstance(cached, int) and isinstance(prompt, int):
                usage = {"input_tokens": prompt - min(cached, prompt), "cache_read_input_tokens": cached}
            else:
                usage = {"input_tokens": prompt}
            usage["output_tokens"] = self.usage.get("completion_tokens")
        events.append(
            {"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": None}, "usage": usage}
        )
        events.append({"type": "message_stop"})
        return events


async def events_from_chat(
    chunks: AsyncGenerator[dict[str, Any], None], *, model: str, input_tokens: int
) -> AsyncGenerator[dict[str, Any], None]:
    """A provider's chat stream as Message stream events. Closing this closes the provider's stream."""
    translator = ChatToEvents(model=model, input_tokens=input_tokens)
    async with aclosing(chunks):
        async for chunk in chunks:
            for event in translator.feed(chunk):
                yield event
    for event in translator.finish():
        yield event


def sse(event: dict[str, Any]) -> bytes:
    """Anthropic's framing: the event name, then its JSON."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
