"""OpenAI's Responses API (POST /v1/responses): its request shape, and its translation onto chat completions and
back.

Request → chat: `instructions` → a system message; `input` (a string, or items: `message` items with
`input_text` / `input_image` / `input_file` parts, earlier `output_text` messages and `function_call` items,
`function_call_output` items) → chat messages, the conversation of `previous_response_id` first; function tools
(flat, as the Responses API has them) → chat's nested function tools; tool_choice, parallel_tool_calls;
`text.format` → response_format; max_output_tokens → max_tokens; `reasoning.effort` → reasoning_effort (the
operation passes it only to models that support it). Reasoning items are accepted and not forwarded.

Chat → Response: content → a `message` output item with an `output_text` part, tool calls → `function_call`
items (call_id = the chat call id), finish_reason "length" → status "incomplete" (max_output_tokens);
streams: chat chunks → OpenAI's typed events, each with its sequence_number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from billing.models import Receipt
from billing.money import json_number
from config.errors import ApiError
from config.ids import new_id


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- the request ----------------------------------------------------------------------------------------


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class InputImage(_Open):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] = "auto"

    @model_validator(mode="after")
    def _source(self) -> InputImage:
        if self.file_id and not self.image_url:
            raise ValueError("file_id is not supported (there is no Files API); send image_url (http(s) or data:)")
        if not self.image_url:
            raise ValueError("image_url is required")
        if not self.image_url.startswith(("http://", "https://", "data:image/")):
            raise ValueError("image_url must be an http(s) URL or a data:image/… URL")
        return self


class InputFile(_Open):
    type: Literal["input_file"]
    file_data: str | None = None
    filename: str | None = None
    file_id: str | None = None
    file_url: str | None = None

    @model_validator(mode="after")
    def _inline(self) -> InputFile:
        if not self.file_data:
            raise ValueError("send the file inline as file_data (file_id and file_url are not supported)")
        return self


class OutputText(_Open):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Open):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")]
OutputPart = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]


class MessageItem(_Open):
    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    content: list[Part]  # a string is one text part (made here, so errors in parts name the part)
    id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_content(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            text = value["content"]
            part = (
                {"type": "output_text", "text": text, "annotations": []}
                if value.get("role") == "assistant"
                else {"type": "input_text", "text": text}
            )
            return {**value, "content": [part]}
        return value


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[OutputPart]
    id: str | None = None


class ReasoningItem(_Open):
    type: Literal["reasoning"]


Item = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem, Field(discriminator="type")]


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Open):
    type: Literal["function"]
    name: str


class TextFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema" and (not self.name or self.schema_ is None):
            raise ValueError("a json_schema format needs a name and a schema")
        return self


class TextConfig(_Open):
    format: TextFormat | None = None


class ReasoningConfig(_Open):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    # A string is one user message: made into that item here, so errors in items name the item ("input.2").
    input: list[Item]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    store: bool = True  # as OpenAI's
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=60)
    stream: bool | None = False
    user: str | None = Field(default=None, max_length=256)

    # Filled by the operation: this request's input as items with ids, and the conversation it continues.
    _items: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _history: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @field_validator("input", mode="before")
    @classmethod
    def _messages_may_omit_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "message", "role": "user", "content": value}] if value else []
        # EasyInputMessage: {"role": "user", "content": "…"} without "type"
        if isinstance(value, list):
            return [
                {**item, "type": "message"}
                if isinstance(item, dict) and "type" not in item and "role" in item
                else item
                for item in value
            ]
        return value

    @field_validator("input")
    @classmethod
    def _input_not_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("input must not be empty")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 pairs, keys up to 64 and values up to 512 characters")
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ResponsesRequest:
        if (isinstance(self.tool_choice, NamedFunction) or self.tool_choice == "required") and not self.tools:
            raise ValueError("tool_choice requires tools")
        return self

    @property
    def format(self) -> TextFormat | None:
        return self.text.format if self.text else None

    @property
    def effort(self) -> str | None:
        effort = self.reasoning.effort if self.reasoning else None
        return None if effort == "none" else effort


# --- input items ----------------------------------------------------------------------------------------

_ITEM_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as stored items: ids assigned, string contents as parts, status completed."""
    out = []
    for item in (item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in request.input):
        kind = item["type"]
        item = {**item, "id": item.get("id") or new_id(_ITEM_PREFIX[kind])}
        if kind == "message":
            if isinstance(item["content"], str):
                part = (
                    {"type": "output_text", "text": item["content"], "annotations": []}
                    if item["role"] == "assistant"
                    else {"type": "input_text", "text": item["content"]}
                )
                item["content"] = [part]
            item["status"] = "completed"
        elif kind in ("function_call", "function_call_output"):
            item["status"] = "completed"
        out.append(item)
    return out


def _chat_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "text", "text": part["refusal"]}
    if kind == "input_image":
        image = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    file = {"file_data": part["file_data"]}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts if p["type"] != "input_image")


def chat_messages(items: list[dict[str, Any]], *, instructions: str | None = None) -> list[dict[str, Any]]:
    """Stored-form items (history, then this input) → chat messages."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            parts = item["content"]
            role = item["role"]
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text(parts)})
            elif role in ("system", "developer"):
                messages.append({"role": role, "content": _text(parts)})
            elif all(p["type"] == "input_text" for p in parts):
                messages.append({"role": "user", "content": _text(parts)})
            else:
                messages.append({"role": "user", "content": [_chat_part(p) for p in parts]})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function", "function": {"name": item["name"]}}
            call["function"]["arguments"] = item["arguments"]
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last.get("content"):
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            content = output if isinstance(output, str) else _text(output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
        # reasoning items: nothing a chat upstream can take
    return messages


def to_chat(request: ResponsesRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat request body for this request over `items` (the continued conversation, then this input)."""
    chat: dict[str, Any] = {
        "model": request.model,
        "messages": chat_messages(items, instructions=request.instructions),
    }
    if request.max_output_tokens is not None:
        chat["max_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        value = getattr(request, name)
        if value is not None:
            chat[name] = value
    if request.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v
                    for k, v in (
                        ("name", tool.name),
                        ("description", tool.description),
                        ("parameters", tool.parameters),
                        ("strict", tool.strict),
                    )
                    if v is not None
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        if isinstance(choice, NamedFunction):
            chat["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif choice is not None:
            chat["tool_choice"] = choice
    fmt = request.format
    if fmt is not None and fmt.type == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.description:
            spec["description"] = fmt.description
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return chat


def has_images(items: list[dict[str, Any]]) -> bool:
    return any(
        part.get("type") == "input_image" for item in items if item["type"] == "message" for part in item["content"]
    )


# --- chat → Response ------------------------------------------------------------------------------------

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def message_item(text: str, *, item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def call_item(call_id: str, name: str, arguments: str, *, item_id: str | None = None, status: str = "completed"):
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def output_from_chat(completion: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """A chat.completion → (output items, finish_reason)."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    finish = choice.get("finish_reason")
    status = "incomplete" if finish in INCOMPLETE else "completed"
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(text, status=status))
    elif isinstance(message.get("refusal"), str) and message["refusal"]:
        item = message_item("", status=status)
        item["content"] = [{"type": "refusal", "refusal": message["refusal"]}]
        output.append(item)
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(
            call_item(call.get("id") or new_id("call"), function.get("name") or "", function.get("arguments") or "")
        )
    return output, finish


def produced_text(output: list[dict[str, Any]]) -> str:
    pieces = []
    for item in output:
        if item["type"] == "message":
            pieces.append(_text(item["content"]))
        elif item["type"] == "function_call":
            pieces.append(item["name"] + item["arguments"])
    return "".join(pieces)


def usage_block(receipt: Receipt, upstream: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Responses API's usage object, from the receipt, plus Tollgate's exact costs."""
    prompt = receipt.prompt_tokens + receipt.cached_tokens
    reasoning = 0
    details = (upstream or {}).get("completion_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
        reasoning = max(0, min(details["reasoning_tokens"], receipt.completion_tokens))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": receipt.cached_tokens},
        "output_tokens": receipt.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + receipt.completion_tokens,
        "input_cost_usd": json_number(receipt.input_cost_nusd),
        "output_cost_usd": json_number(receipt.output_cost_nusd),
        "total_cost_usd": json_number(receipt.total_cost_nusd),
        "latency_ms": receipt.latency_ms,
        "ttft_ms": receipt.ttft_ms,
        "receipt_id": receipt.public_id,
    }


def skeleton(
    request: ResponsesRequest, *, response_id: str, model: str, created_at: int, effort: str | None
) -> dict[str, Any]:
    """The response object before its output: everything that echoes the request."""
    fmt = request.format
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls if request.parallel_tool_calls is not None else True,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": effort, "summary": None},
        "store": request.store,
        "temperature": request.temperature if request.temperature is not None else 1.0,
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
        "tool_choice": (
            request.tool_choice.model_dump() if isinstance(request.tool_choice, NamedFunction) else request.tool_choice
        )
        or "auto",
        "tools": [tool.model_dump(exclude_none=True) for tool in request.tools or ()],
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": request.user,
        "metadata": request.metadata or {},
    }


def finished(body: dict[str, Any], output: list[dict[str, Any]], finish: str | None, *, completed_at: int) -> None:
    """Set a response's final output and status (completed, or incomplete with its reason)."""
    body["output"] = output
    reason = INCOMPLETE.get(finish or "")
    body["status"] = "incomplete" if reason else "completed"
    body["incomplete_details"] = {"reason": reason} if reason else None
    body["completed_at"] = completed_at


# --- chat chunks → typed stream events ------------------------------------------------------------------


class ResponseEvents:
    """OpenAI's Responses stream events from chat chunks. Every event gets the next sequence_number. Output items
    open as their first delta arrives and close (text done, part done, item done / arguments done, item done)
    when the next one opens or the stream ends."""

    def __init__(self) -> None:
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.texts: list[str] = []  # of the open message item
        self.open: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_calls index → its item
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _close(self) -> list[dict[str, Any]]:
        item = self.open
        if item is None:
            return []
        self.open = None
        index = len(self.output) - 1
        if item["type"] == "message":
            text = "".join(self.texts)
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
            item["status"] = "completed"
            return [
                self.event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self.event(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                ),
                self.event("response.output_item.done", output_index=index, item=dict(item)),
            ]
        item["status"] = "completed"
        return [
            self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self.event("response.output_item.done", output_index=index, item=dict(item)),
        ]

    def _open(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        events = self._close()
        self.open = item
        self.output.append(item)
        return [*events, self.event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item))]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # the Responses API has one output; n > 1 is not part of it
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                if self.open is None or self.open["type"] != "message":
                    item = message_item("", status="in_progress")
                    item["content"] = []
                    self.texts = []
                    events += self._open(item)
                    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    events.append(
                        self.event(
                            "response.content_part.added",
                            item_id=item["id"],
                            output_index=len(self.output) - 1,
                            content_index=0,
                            part=part,
                        )
                    )
                self.texts.append(text)
                events.append(
                    self.event(
                        "response.output_text.delta",
                        item_id=self.open["id"],  # type: ignore[index]
                        output_index=len(self.output) - 1,
                        content_index=0,
                        delta=text,
                        logprobs=[],
                    )
                )
            for call in delta.get("tool_calls") or ():
                position = call.get("index", 0)
                function = call.get("function") or {}
                found = self.calls.get(position)
                if found is None:
                    item = call_item(call.get("id") or new_id("call"), function.get("name") or "", "")
                    item["status"] = "in_progress"
                    self.calls[position] = item
                    events += self._open(item)
                else:
                    item = found
                arguments = function.get("arguments")
                if arguments:
                    item["arguments"] += arguments
                    events.append(
                        self.event(
                            "response.function_call_arguments.delta",
                            item_id=item["id"],
                            output_index=self.output.index(item),
                            delta=arguments,
                        )
                    )
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def close(self) -> list[dict[str, Any]]:
        return self._close()

    def produced(self) -> str:
        return produced_text(self.output) + (
            "".join(self.texts) if self.open and self.open["type"] == "message" else ""
        )


def refuse(message: str, param: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param)
