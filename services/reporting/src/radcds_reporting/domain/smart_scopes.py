"""SMART App Launch scopes (HL7 SMART App Launch 2.x, "Scopes and Launch Context").

Parses SMART v1 (``patient/Observation.read``, ``user/*.write``, ``system/*.*``) and v2
(``patient/Observation.rs``, ``system/*.cruds``) clinical scopes and decides whether a set of
scopes permits one interaction on one resource type. v2 scopes that carry a query
(``patient/Observation.rs?category=laboratory``) narrow access in ways this server does not
evaluate; they grant nothing here (deny rather than over-grant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Interaction(StrEnum):
    """The SMART v2 permission letters (c create, r read, u update, d delete, s search)."""

    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


class Context(StrEnum):
    """Whose data a scope covers: one patient's, the user's, or the whole system's."""

    PATIENT = "patient"
    USER = "user"
    SYSTEM = "system"


_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$")


@dataclass(frozen=True, slots=True)
class ClinicalScope:
    """One clinical-data scope: context, resource type (``*`` for all) and permissions."""

    context: Context
    resource_type: str
    permissions: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> ClinicalScope | None:
        """The scope, or None for a non-clinical (``openid``, ``launch``) or query-restricted scope."""
        match = _SCOPE.match(text)
        if match is None:
            return None
        context, rtype, perms = match.groups()
        permissions = _V1.get(perms, frozenset(perms))
        if not permissions:
            return None
        return cls(Context(context), rtype, permissions)

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        """True when this scope permits ``interaction`` on ``resource_type``."""
        return self.resource_type in {"*", resource_type} and interaction.value in self.permissions


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token's scopes allow for one request: whether, and in which contexts."""

    contexts: frozenset[Context]

    @property
    def allowed(self) -> bool:
        """True when at least one scope permits the interaction."""
        return bool(self.contexts)

    @property
    def patient_only(self) -> bool:
        """True when only ``patient/`` scopes permit it: access is limited to the launch patient."""
        return self.contexts == {Context.PATIENT}


def parse_scopes(scope_claim: str) -> tuple[ClinicalScope, ...]:
    """The clinical scopes of a space-separated ``scope`` claim (RFC 8693 / OAuth 2.0 ``scope``)."""
    return tuple(s for s in (ClinicalScope.parse(t) for t in scope_claim.split()) if s is not None)


def grant(scopes: tuple[ClinicalScope, ...], resource_type: str, interaction: Interaction) -> Grant:
    """Which contexts of ``scopes`` permit ``interaction`` on ``resource_type``."""
    return Grant(frozenset(s.context for s in scopes if s.allows(resource_type, interaction)))
