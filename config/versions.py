"""Published versions of the /v1 API, like Stripe's dated API versions.

Every /v1 response says which version it was served with (`Tollgate-Version: YYYY-MM-DD`); a request may
pin an older published version with the same header. A version that was never published is refused (400)
before anything else happens, so a client never silently gets behaviour it did not ask for. When behaviour
changes incompatibly, a new date is appended here and code that must keep the old behaviour asks
`applied(...)` which one a request runs under.
"""

from __future__ import annotations

from config.errors import ApiError

HEADER = "Tollgate-Version"

# Oldest first. The README's "API versions" table describes each one.
PUBLISHED: tuple[str, ...] = ("2026-12-01",)
CURRENT = PUBLISHED[-1]


def resolve(requested: str | None) -> str:
    """The version a request is served with: the one it pins, or the current one."""
    if requested is None or not requested.strip():
        return CURRENT
    value = requested.strip()
    if value not in PUBLISHED:
        raise ApiError(
            400,
            "invalid_api_version",
            f"Unknown {HEADER} '{value[:40]}'. Published versions: {', '.join(PUBLISHED)}.",
            param=HEADER,
        )
    return value
