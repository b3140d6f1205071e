"""The life cycle of a DiagnosticReport once a radiologist reviews it.

FHIR R4 DiagnosticReport.status (value set diagnostic-report-status) and HL7 v2 OBR-25
(P preliminary, F final, C corrected). A preliminary report becomes ``final`` when signed;
a change to a final report makes it ``amended`` (or ``corrected``, or ``appended``), and
``entered-in-error`` ends every path.
"""

from __future__ import annotations

from enum import StrEnum


class ReportStatus(StrEnum):
    """FHIR R4 diagnostic-report-status codes."""

    REGISTERED = "registered"
    PARTIAL = "partial"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"
    CORRECTED = "corrected"
    APPENDED = "appended"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


#: Statuses of a report a radiologist has signed (v2 OBR-25 F or C).
SIGNED = frozenset({ReportStatus.FINAL, ReportStatus.AMENDED, ReportStatus.CORRECTED, ReportStatus.APPENDED})
_UNSIGNED = frozenset({ReportStatus.REGISTERED, ReportStatus.PARTIAL, ReportStatus.PRELIMINARY})
_ENDED = frozenset({ReportStatus.CANCELLED, ReportStatus.ENTERED_IN_ERROR})


class IllegalTransition(ValueError):
    """The requested status change is not allowed from the current status (HTTP 409)."""


class AuthorRequired(ValueError):
    """A signed status needs the radiologist who signs (HTTP 422)."""


def next_status(current: ReportStatus, requested: ReportStatus, *, content_changed: bool) -> ReportStatus:
    """The status to store when a client asks for ``requested`` on a report in ``current``.

    - unsigned -> unsigned or ``final`` (signing); never straight to amended/corrected/appended;
    - signed -> ``final`` again with changed content is recorded as ``amended``; signed ->
      amended, corrected or appended; never back to an unsigned status;
    - anything -> ``entered-in-error``; nothing leaves cancelled or entered-in-error.
    """
    if current in _ENDED:
        raise IllegalTransition(f"a {current} report cannot change")
    if requested is ReportStatus.ENTERED_IN_ERROR:
        return requested
    if requested is ReportStatus.CANCELLED:
        if current in SIGNED:
            raise IllegalTransition("a signed report cannot be cancelled; mark it entered-in-error")
        return requested
    if current in _UNSIGNED:
        if requested in _UNSIGNED or requested is ReportStatus.FINAL:
            return requested
        raise IllegalTransition(f"a {current} report must be signed (final) before it is {requested}")
    if requested in _UNSIGNED:
        raise IllegalTransition(f"a {current} report cannot go back to {requested}")
    if requested is ReportStatus.FINAL:
        return ReportStatus.AMENDED if content_changed else current
    return requested


def require_author(status: ReportStatus, author: str) -> None:
    """Raise :class:`AuthorRequired` when a signed status comes without a Practitioner reference."""
    if status in SIGNED and not author.startswith(("Practitioner/", "PractitionerRole/")):
        raise AuthorRequired(
            f"status {status} needs resultsInterpreter (or performer) referencing the signing Practitioner"
        )
