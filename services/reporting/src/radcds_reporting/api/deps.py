"""SMART access checks of the reporting API. The routes get the service's parts from the typed container
(:class:`radcds_reporting.app.ReportingComponents`) when :func:`radcds_reporting.api.fhir.fhir_router` is built,
not from untyped ``app.state`` lookups."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request

from radcds_reporting.adapters.auth.smart import InvalidToken, SmartTokenVerifier
from radcds_reporting.domain.smart_scopes import Interaction, grant

log = logging.getLogger(__name__)
REALM = "radcds-fhir"


@dataclass(frozen=True, slots=True)
class Access:
    """Who is calling and what they may see for this request."""

    #: Set when only ``patient/`` scopes allow the request: results are limited to this Patient id.
    patient: str | None = None
    #: The user's FHIR reference (``fhirUser`` claim), e.g. ``Practitioner/123``.
    user: str | None = None


class AccessDenied(Exception):
    """401 (no or bad token) or 403 (scope insufficient), with the ``WWW-Authenticate`` value."""

    def __init__(self, status: int, message: str, www_authenticate: str) -> None:
        super().__init__(message)
        self.status = status
        self.www_authenticate = www_authenticate


class Authorizer:
    """SMART scope checks of one request; ``verifier`` None means open access (development)."""

    def __init__(self, verifier: SmartTokenVerifier | None) -> None:
        self._verifier = verifier

    @property
    def open(self) -> bool:
        """True when access is not checked."""
        return self._verifier is None

    def check(self, request: Request, resource_type: str, interaction: Interaction) -> Access:
        """Verify the bearer token and its scopes for ``interaction`` on ``resource_type``."""
        if self._verifier is None:
            return Access(user=request.headers.get("X-Radcds-Dev-User") or None)
        try:
            token = self._verifier.verify(request.headers.get("Authorization"))
        except InvalidToken as exc:
            log.info("bearer token refused: %s", exc)  # the message never contains the token
            value = f'Bearer realm="{REALM}", error="invalid_token", error_description="{exc}"'
            if not request.headers.get("Authorization"):
                value = f'Bearer realm="{REALM}"'
            raise AccessDenied(401, "a valid bearer token is required", value) from None
        allowed = grant(token.scopes, resource_type, interaction)
        if not allowed.allowed:
            scope = f"user/{resource_type}.{'rs' if interaction in {Interaction.READ, Interaction.SEARCH} else 'u'}"
            raise AccessDenied(
                403,
                f"the token's scopes do not allow {interaction.name.lower()} of {resource_type}",
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"',
            )
        if allowed.patient_only:
            if not token.patient:
                raise AccessDenied(
                    403,
                    "patient/ scopes need a patient in the token's launch context",
                    f'Bearer realm="{REALM}", error="insufficient_scope"',
                )
            return Access(patient=token.patient, user=token.fhir_user)
        return Access(user=token.fhir_user)
