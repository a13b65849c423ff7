"""Signals accounts sends so that apps above it (billing) can act without accounts importing them."""

from django.dispatch import Signal

# Sent inside create_team's transaction, after the team and its owner membership exist, so a receiver's
# rows (billing: the wallet, a sign-up grant) commit or roll back with the team.
# kwargs: team (accounts.models.Team), owner (accounts.models.User), origin (str: TeamOrigin value).
team_created = Signal()
