"""The permission matrix, cell by cell: what each role may do in a team."""

import pytest

from accounts.permissions import Action, can, can_assign

A = Action
EXPECTED = {
    "owner": set(Action),
    "admin": set(Action) - {A.TEAM_DELETE, A.TEAM_TRANSFER},
    "developer": {A.MEMBERS_VIEW, A.KEYS_VIEW, A.KEYS_MANAGE_OWN, A.USAGE_VIEW, A.IMAGES_GENERATE, A.PLAYGROUND_USE},
    "viewer": {A.MEMBERS_VIEW, A.KEYS_VIEW, A.BILLING_VIEW, A.USAGE_VIEW, A.EVENTS_VIEW},
    "billing": {A.MEMBERS_VIEW, A.BILLING_VIEW, A.BILLING_MANAGE, A.USAGE_VIEW},
}


@pytest.mark.parametrize("role", EXPECTED)
@pytest.mark.parametrize("action", list(Action))
def test_each_cell_of_the_matrix(role, action):
    assert can(role, action) is (action in EXPECTED[role])


@pytest.mark.parametrize("action", list(Action))
def test_a_non_member_may_do_nothing(action):
    assert can(None, action) is False
    assert can("stranger", action) is False


def test_only_owners_hand_out_ownership():
    assert can_assign("owner", "owner")
    assert not can_assign("admin", "owner")
    assert can_assign("admin", "developer")
    for role in ("developer", "viewer", "billing"):
        assert not can_assign(role, "viewer")
