"""Pagination for the management API (DRF): `?limit=` and `?offset=` are bounded, and a value out of range is a
400 naming the parameter (a huge number used to reach the database and fail there with a 500)."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 1_000_000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit = 200

    def _bounded(self, request, param: str, *, low: int, high: int, default: int) -> int:
        raw = request.query_params.get(param)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError({param: ["A whole number is required."]}) from None
        if not low <= value <= high:
            raise ValidationError({param: [f"Must be between {low} and {high}."]})
        return value

    def get_limit(self, request) -> int:
        return self._bounded(
            request, self.limit_query_param, low=1, high=self.max_limit, default=self.default_limit or self.max_limit
        )

    def get_offset(self, request) -> int:
        return self._bounded(request, self.offset_query_param, low=0, high=MAX_OFFSET, default=0)
