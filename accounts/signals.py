"""Signals accounts sends *inside* the transaction of the change they announce, so a receiver that writes rows
(billing creates the wallet, webhooks stores an event per change) commits or rolls back together with the
change. Higher layers listen; accounts never imports them. Receivers may raise: the change then rolls back."""

from django.dispatch import Signal

# Sent after the team and its owner membership exist (billing: the wallet, a sign-up grant).
# kwargs: team (accounts.models.Team), owner (accounts.models.User), origin (str: TeamOrigin value).
team_created = Signal()
# kwargs: key (accounts.models.ApiKey, already saved)
key_created = Signal()
# kwargs: key (ApiKey, rotated: the previous secret works until key.previous_expires_at), previous_masked (str)
key_rotated = Signal()
# kwargs: key (ApiKey, revoked_at set)
key_revoked = Signal()
# kwargs: membership (accounts.models.Membership of a person who accepted an invitation), invited_by (User | None)
member_joined = Signal()
