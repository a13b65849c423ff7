"""Every charging /v1 operation, one module each. The transport (gateway/transport.py) serves each at its
path, and at `{path}/estimate` when it has one; the OpenAPI document describes them from the same list."""

from __future__ import annotations

from gateway.operations.base import Call, Operation, Result, StreamView
from gateway.operations.chat import ChatCompletions
from gateway.operations.completions import Completions
from gateway.operations.embeddings import Embeddings
from gateway.operations.images import ImageGenerations, ImageJobs
from gateway.operations.messages import Messages
from gateway.operations.responses import Responses

OPERATIONS: tuple[Operation, ...] = (
    ChatCompletions(),
    Completions(),
    Embeddings(),
    ImageGenerations(),
    ImageJobs(),
    Responses(),
    Messages(),
)

__all__ = ["OPERATIONS", "Call", "Operation", "Result", "StreamView"]
