"""Stored Responses API objects: the one door to a team's rows (missing and another team's are the same 404).

Written by the responses operation in the settlement's transaction (gateway/operations/responses.py); read here
for GET /v1/responses/{id}, its input items and `previous_response_id`; deleted by DELETE /v1/responses/{id}.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import transaction

from accounts.auth import KeyContext
from accounts.models import Team
from accounts.services import audit
from config.errors import ApiError
from gateway.models import StoredResponse

MAX_PAGE = 100


def _not_found(response_id: str, param: str = "response_id") -> ApiError:
    return ApiError(404, "not_found", f"No response '{response_id[:60]}' for this team.", param=param)


def _row(team_id: int, response_id: str, *, param: str = "response_id") -> StoredResponse:
    row = StoredResponse.objects.filter(team_id=team_id, response_id=response_id).first()
    if row is None:
        raise _not_found(response_id, param)
    return row


def conversation(team_id: int, response_id: str) -> list[dict[str, Any]]:
    """What `previous_response_id` continues: the stored response's context, its input and its output items."""
    row = _row(team_id, response_id, param="previous_response_id")
    output = orjson.loads(row.response).get("output") or []
    return [*orjson.loads(row.context), *orjson.loads(row.input_items), *output]


def response_body(ctx: KeyContext, response_id: str) -> bytes:
    return _row(ctx.team_id, response_id).response.encode()


def input_items_body(ctx: KeyContext, response_id: str, *, after: str | None, limit: int, order: str) -> bytes:
    """OpenAI's list of a response's input items, newest first by default, paged by item id (`after`)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_request_error", f"limit must be from 1 to {MAX_PAGE}.", param="limit")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid_request_error", "order must be 'asc' or 'desc'.", param="order")
    items = orjson.loads(_row(ctx.team_id, response_id).input_items)
    if order == "desc":
        items.reverse()
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise ApiError(
                400, "invalid_request_error", f"No input item '{after[:60]}' in this response.", param="after"
            )
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return orjson.dumps(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


def delete_response(ctx: KeyContext, response_id: str) -> bytes:
    with transaction.atomic():
        row = _row(ctx.team_id, response_id)
        row.delete()
        audit(
            "response.deleted",
            team=Team(pk=ctx.team_id),
            actor_label=f"API key {ctx.name} ({ctx.masked})",
            target=response_id,
        )
    return orjson.dumps({"id": response_id, "object": "response", "deleted": True})
