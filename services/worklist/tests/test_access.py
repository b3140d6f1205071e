"""Roles: a radiologist with a Practitioner identity signs; a viewer only reads; an admin sets thresholds."""

from __future__ import annotations

import pytest

from radcds_worklist.domain.access import Forbidden, Role, User


def test_a_radiologist_with_a_practitioner_may_sign():
    user = User("iss|ada", "Dr Ada", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")
    assert user.can_read and user.can_sign and not user.can_administer
    user.require_sign()


def test_a_viewer_may_read_but_not_sign():
    user = User("iss|vic", "Vic", frozenset({Role.VIEWER}), "Practitioner/vic")
    assert user.can_read and not user.can_sign
    with pytest.raises(Forbidden):
        user.require_sign()


def test_a_radiologist_without_a_practitioner_identity_may_not_sign():
    assert not User("iss|x", "X", frozenset({Role.RADIOLOGIST})).can_sign


def test_only_an_admin_may_set_thresholds():
    with pytest.raises(Forbidden):
        User("iss|ada", "Dr Ada", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada").require_admin()
    User("iss|ann", "Ann", frozenset({Role.ADMIN})).require_admin()


def test_a_user_without_any_role_may_not_read():
    assert not User("iss|nobody", "Nobody", frozenset()).can_read
