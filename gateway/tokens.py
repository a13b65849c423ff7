"""A deterministic local tokenizer: no downloads, no vocabulary files, cheap enough for the hot path.

It imitates BPE pre-tokenisation (GPT-2's split into contractions, words with their leading space,
digit groups, punctuation runs and whitespace runs); a piece of up to six characters is one token,
a longer piece is cut every four characters, and text outside ASCII counts one token per character
(close to what real tokenizers do for CJK and an upper bound for accented Latin). Real upstreams
report their own usage; these counts serve the simulator, holds, and streams whose upstream sent no
usage.

`tokenize()` and `count_tokens()` agree by construction, and any prefix made of whole pieces counts
as the number of pieces in it, so the simulator can cut a reply at exactly `max_tokens`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

_PIECES = re.compile(
    r"'(?:[sdmt]|ll|ve|re)(?![^\W\d_])"  # contractions
    r"| ?[^\W\d_]+"  # a word with its leading space
    r"| ?\d{1,3}"  # digits in groups of three
    r"| ?(?:[^\s\w]|_)+"  # punctuation runs
    r"|\s+(?!\S)|\s+"  # whitespace runs (the last space stays with the next word)
)
_findall = _PIECES.findall

MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, as OpenAI counts them
REPLY_PRIMING_TOKENS = 3
IMAGE_TOKENS = 1_600  # a generous flat allowance per image (OpenAI high detail, a few tiles)
FILE_TOKENS = 4_000  # per attached document we cannot read
TOOL_OVERHEAD_TOKENS = 8
ESTIMATE_MARGIN_PERCENT = 10  # holds are placed with our count + 10 %, since real tokenizers differ


def _piece_tokens(piece: str) -> int:
    n = len(piece)
    if not piece.isascii():
        return n
    return 1 if n <= 6 else (n + 3) >> 2


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (deterministic, local)."""
    if not text:
        return 0
    if text.isascii():
        total = 0
        for piece in _findall(text):
            n = len(piece)
            total += 1 if n <= 6 else (n + 3) >> 2
        return total
    return sum(_piece_tokens(p) for p in _findall(text))


def tokenize(text: str) -> list[str]:
    """The token pieces of `text`; "".join(tokenize(t)) == t and len(tokenize(t)) == count_tokens(t)."""
    out: list[str] = []
    for piece in _findall(text):
        if not piece.isascii():
            out.extend(piece)
        elif len(piece) <= 6:
            out.append(piece)
        else:
            out.extend(piece[i : i + 4] for i in range(0, len(piece), 4))
    return out


def _content_tokens(content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += count_tokens(part)
                continue
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                total += count_tokens(part.get("text") or "")
            elif kind in ("image_url", "image", "input_image"):
                total += IMAGE_TOKENS
            elif kind in ("file", "input_file", "document", "input_audio"):
                total += FILE_TOKENS
            else:
                total += count_tokens(orjson.dumps(part).decode())
        return total
    return count_tokens(orjson.dumps(content).decode())


def _inputs(value: Any) -> Iterable[Any]:
    """A legacy `prompt` or embeddings `input`: a string, a list of strings, token ids or lists of ids."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return (value,)
        return value
    return (value,)


def _input_tokens(value: Any) -> int:
    total = 0
    for item in _inputs(value):
        if isinstance(item, str):
            total += count_tokens(item)
        elif isinstance(item, list):
            total += len(item)  # already token ids
        else:
            total += count_tokens(str(item))
    return total


def count_prompt_tokens(payload: dict[str, Any]) -> int:
    """Prompt tokens of an OpenAI request body as this tokenizer counts them (what the simulator bills)."""
    messages = payload.get("messages")
    if messages is None:
        if "prompt" in payload:
            return _input_tokens(payload.get("prompt"))
        return _input_tokens(payload.get("input"))
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += MESSAGE_OVERHEAD_TOKENS + _content_tokens(message.get("content"))
        if message.get("name"):
            total += count_tokens(str(message["name"]))
        for call in message.get("tool_calls") or ():
            function = (call.get("function") if isinstance(call, dict) else None) or {}
            total += TOOL_OVERHEAD_TOKENS + count_tokens(str(function.get("name") or ""))
            total += count_tokens(str(function.get("arguments") or ""))
        for attachment in message.get("attachments") or ():
            total += FILE_TOKENS if not isinstance(attachment, str) or len(attachment) > 64 else IMAGE_TOKENS
    for tool in payload.get("tools") or ():
        total += TOOL_OVERHEAD_TOKENS + count_tokens(orjson.dumps(tool).decode())
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        total += count_tokens(orjson.dumps(response_format.get("json_schema") or {}).decode())
    return total


def estimate_margin(counted: int) -> int:
    """What a hold adds to our count of a prompt, since other tokenizers count differently."""
    return (counted * ESTIMATE_MARGIN_PERCENT + 99) // 100


class RunningCount:
    """`count_tokens` of a text that grows by appends, at the cost of what is appended (a stream under a cost cap
    counts every chunk before it is sent).

    Every piece but the last is final: no piece pattern looks behind, and each piece ends before a character that
    is already there (a word before a non-letter, a whitespace run before what follows it), so appending can only
    change the last piece. Only that piece and the new text are split again."""

    __slots__ = ("_final", "_tail")

    def __init__(self) -> None:
        self._final = 0  # tokens of the pieces before the last
        self._tail = ""  # the last piece

    def _split(self, text: str) -> tuple[list[str], int]:
        pieces = _findall(self._tail + text)
        return pieces, sum(map(_piece_tokens, pieces))

    def peek(self, text: str) -> int:
        """The count if `text` were appended."""
        return self._final + self._split(text)[1] if text else self.tokens

    def add(self, text: str) -> int:
        if text:
            pieces, _ = self._split(text)
            self._final += sum(map(_piece_tokens, pieces[:-1]))
            self._tail = pieces[-1] if pieces else ""
        return self.tokens

    @property
    def tokens(self) -> int:
        return self._final + (_piece_tokens(self._tail) if self._tail else 0)
