"""OpenAI request shapes (pydantic). Validation names the offending parameter; unknown parameters are
kept (extra="allow") and passed through to OpenAI-compatible upstreams."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from config.errors import ApiError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- chat content ----------------------------------------------------------------------------------


class ImageUrl(_Closed):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Closed):
    type: Literal["text"]
    text: str


class ImagePart(_Closed):
    type: Literal["image_url"]
    image_url: ImageUrl


class OtherPart(_Open):
    """input_audio, file, refusal: passed through to upstreams that understand them."""

    type: Literal["input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessage:
        if self.content is None and self.role not in ("assistant",):
            raise ValueError(f"a '{self.role}' message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs tool_call_id")
        return self


class FunctionDef(_Open):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Closed):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Closed):
    name: str


class NamedToolChoice(_Closed):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Open):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Closed):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


class StreamOptions(_Open):
    include_usage: bool = False


class Attachment(_Open):
    """Thaura-style attachment object: base64 `data` (or `content`) with a mime type, or a `url`."""

    type: str | None = None
    data: str | None = None
    content: str | None = None
    url: str | None = None
    mime_type: str | None = None
    name: str | None = None


Stop = str | list[str] | None


def _check_stop(value: Stop) -> Stop:
    if isinstance(value, list) and len(value) > 4:
        raise ValueError("at most 4 stop sequences")
    return value


class _Sampling(_Open):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=8)
    stop: Stop = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    _stop = field_validator("stop")(_check_stop)


class ChatCompletionRequest(_Sampling):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    store: bool | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    metadata: dict[str, str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    logit_bias: dict[str, int] | None = None
    attachments: list[str | Attachment] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 pairs, keys up to 64 and values up to 512 characters")
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        if (isinstance(self.tool_choice, NamedToolChoice) or self.tool_choice == "required") and not self.tools:
            raise ValueError("tool_choice requires tools")
        return self

    @property
    def output_cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    best_of: int | None = Field(default=None, ge=1, le=8)

    @property
    def output_cap(self) -> int | None:
        return self.max_tokens


class EmbeddingImageUrl(_Closed):
    url: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _image_url(cls, value: str) -> str:
        if value.startswith(("http://", "https://")):
            return value
        header, sep, data = value.partition(",")
        if not (header.startswith("data:image/") and header.endswith(";base64") and sep):
            raise ValueError("must be an http(s) URL or a data:image/…;base64, URL")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the data URL is not valid base64") from None
        return value


class EmbeddingImagePart(_Closed):
    type: Literal["image_url"]
    image_url: EmbeddingImageUrl


EmbeddingPart = Annotated[TextPart | EmbeddingImagePart, Field(discriminator="type")]


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    # A list of content parts (text and images) is one multimodal input, embedded as one vector.
    input: str | list[str] | list[int] | list[list[int]] | list[EmbeddingPart]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=8192)
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input")
    @classmethod
    def _input_not_empty(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("input must not be an empty list")
            if len(value) > 2048:
                raise ValueError("at most 2048 inputs per request")
            if any(isinstance(item, str) and not item for item in value):
                raise ValueError("inputs must not be empty strings")
        elif isinstance(value, str) and not value:
            raise ValueError("input must not be empty")
        return value

    @property
    def is_multimodal(self) -> bool:
        return isinstance(self.input, list) and bool(self.input) and isinstance(self.input[0], BaseModel)


class ImageGenerationRequest(_Open):
    """OpenAI's images/generations body. `size` and `quality` are checked against the model's price table
    (gateway.image_pricing) once the model is known; everything else here."""

    model: StrictStr = Field(min_length=1)
    prompt: StrictStr = Field(max_length=32_000)
    n: StrictInt = Field(default=1, ge=1, le=10)
    size: StrictStr | None = Field(default=None, max_length=40)
    quality: StrictStr | None = Field(default=None, max_length=20)
    style: Literal["vivid", "natural"] | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: StrictStr | None = Field(default=None, max_length=256)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value


class ImageJobRequest(ImageGenerationRequest):
    """POST /v1/images: the same inputs; the outputs are always links (`output_urls`)."""


# --- validation ------------------------------------------------------------------------------------

# Deeper JSON than this is refused before anything else looks at it (orjson, which the tokenizer uses to
# measure tools and schemas, refuses to write more than 254 levels).
MAX_JSON_DEPTH = 128


def check_depth(payload: dict) -> None:
    """400 naming the field when the body nests deeper than MAX_JSON_DEPTH (iterative: no recursion limit)."""
    stack: list[tuple[dict | list, int, tuple]] = [(payload, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            param = ".".join(str(p) for p in path[:4])
            raise ApiError(
                400,
                "invalid_request_error",
                f"Invalid value for '{param}': JSON nested more than {MAX_JSON_DEPTH} levels deep.",
                param=param,
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((v, depth + 1, (*path, k)) for k, v in items if isinstance(v, dict | list))


def param_of(loc: tuple) -> str | None:
    """Same spelling as config/api.py's ninja handler: `messages.0.content`."""
    parts = [str(p) for p in loc if p not in ("body", "payload", "query", "path")]
    # pydantic adds the union member name (e.g. "str", "list[...]", "TextPart") to the location
    parts = [p for p in parts if not (p[:1].isupper() or "[" in p or p in ("str", "int", "float", "bool"))]
    return ".".join(parts) or None


def parse(schema: type[BaseModel], payload: dict) -> BaseModel:
    """Validate, raising ApiError(400, invalid_request_error) that names the parameter."""
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = param_of(tuple(first.get("loc", ())))
        message = first.get("msg", "Invalid request.")
        message = f"Invalid value for '{param}': {message}" if param else message
        raise ApiError(400, "invalid_request_error", message, param=param) from None


# --- attachments -----------------------------------------------------------------------------------

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "image/webp"),
)


def _sniff(raw: bytes) -> str | None:
    for magic, mime in _IMAGE_MAGIC:
        if raw.startswith(magic):
            return mime
    return None


def _attachment_part(item: str | Attachment, index: int) -> dict:
    param = f"attachments.{index}"
    if isinstance(item, Attachment):
        if item.url:
            if (item.type or item.mime_type or "image").startswith("image") or item.url.startswith("data:image/"):
                return {"type": "image_url", "image_url": {"url": item.url}}
            return {"type": "text", "text": f"[attachment {item.name or index}: {item.url}]"}
        if item.type == "text" and item.content is not None and item.data is None:
            return {"type": "text", "text": item.content}
        data, mime = item.data or item.content, item.mime_type
    else:
        data, mime = item, None
    if not data:
        raise ApiError(400, "invalid_request_error", f"Invalid value for '{param}': empty attachment", param=param)
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        mime = mime or header[5:].split(";")[0] or None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_request_error", f"Invalid value for '{param}': not valid base64", param=param)
    mime = mime or _sniff(raw[:16])
    if mime and mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_request_error",
            f"Invalid value for '{param}': only images and UTF-8 text can be attached",
            param=param,
        )
    name = item.name if isinstance(item, Attachment) and item.name else f"attachment {index + 1}"
    return {"type": "text", "text": f"[{name}]\n{text}"}


def apply_attachments(payload: dict, request: ChatCompletionRequest) -> dict:
    """Thaura-style `attachments` become content parts of the last user message (a new payload dict)."""
    if not request.attachments:
        return payload
    parts = [_attachment_part(item, i) for i, item in enumerate(request.attachments)]
    messages = list(payload["messages"])
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            content = messages[i].get("content")
            existing = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            messages[i] = {**messages[i], "content": existing + parts}
            break
    else:
        messages.append({"role": "user", "content": parts})
    out = {k: v for k, v in payload.items() if k != "attachments"}
    out["messages"] = messages
    return out
