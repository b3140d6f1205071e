"""Who is signed in and what they may do: the worklist's roles (radiologist, viewer, admin).

A radiologist reads and signs; a viewer reads; an admin also sets the monitoring thresholds. Every sign-off,
edit and rejection is attributed to the signed-in :class:`User`, whose FHIR ``practitioner`` reference (the
OpenID Connect ``fhirUser`` claim, SMART App Launch 2.x §"fhirUser") is what the DiagnosticReport names as its
``resultsInterpreter``: it comes from the identity provider, never from a form.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A role granted by the identity provider (its ``roles`` claim)."""

    RADIOLOGIST = "radiologist"
    VIEWER = "viewer"
    ADMIN = "admin"


class Forbidden(PermissionError):
    """The signed-in user lacks the role an action needs (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in user: ``id`` is stable (issuer and subject), ``name`` is for display only."""

    id: str
    name: str
    roles: frozenset[Role]
    #: FHIR reference of the user's Practitioner ("Practitioner/dr-ada"); "" when the provider gave none.
    practitioner: str = ""

    @property
    def can_read(self) -> bool:
        """Every role may read the worklist."""
        return bool(self.roles)

    @property
    def can_sign(self) -> bool:
        """Only a radiologist with a Practitioner reference may sign, edit or reject."""
        return Role.RADIOLOGIST in self.roles and self.practitioner.startswith("Practitioner/")

    @property
    def can_administer(self) -> bool:
        """Only an admin sets monitoring thresholds."""
        return Role.ADMIN in self.roles

    def require_sign(self) -> None:
        """Raise :class:`Forbidden` unless the user may sign."""
        if not self.can_sign:
            raise Forbidden("signing needs the radiologist role and a Practitioner identity")

    def require_admin(self) -> None:
        """Raise :class:`Forbidden` unless the user is an admin."""
        if not self.can_administer:
            raise Forbidden("this needs the admin role")
