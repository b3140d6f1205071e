"""Ports of the worklist's reading use cases: the reporting service, where the draft DiagnosticReport is read and
signed (FHIR R4 DiagnosticReport, 8.1), and the errors it answers with, in the worklist's own terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class ReportingError(Exception):
    """Reporting refused or could not do what was asked; ``status`` is the HTTP status it answered."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ReportNotFound(ReportingError):
    """No such DiagnosticReport (HTTP 404)."""


class ReportChanged(ReportingError):
    """The report changed since it was read (HTTP 412 on ``If-Match``): read it again and decide again."""


class ReportRefused(ReportingError):
    """Reporting refused the change (HTTP 409 an illegal status change, 422 a broken rule, 400 not valid R4), with
    the element at fault when it named one (``expression``, FHIRPath)."""

    def __init__(self, message: str, *, status: int, expression: tuple[str, ...] = ()) -> None:
        super().__init__(message, status=status)
        self.expression = expression


class ReportingUnavailable(ReportingError):
    """Reporting could not be reached or failed (HTTP 5xx, a time-out): nothing was signed."""


class SignInRequired(ReportingError):
    """Reporting refused the user's token (HTTP 401/403)."""


@dataclass(frozen=True, slots=True)
class DraftReport:
    """A DiagnosticReport as read from reporting: its id, version (``meta.versionId``, the ETag), status, the
    conclusion text, and the whole resource (for an edit, which is sent back whole)."""

    id: str
    version: str
    status: str
    conclusion: str
    resource: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AddedNodule:
    """A pulmonary nodule the radiologist adds to the report (sizes in millimetres; SNOMED CT codes): sent to
    reporting as a structured finding, which fusion then assesses (Fleischner 2017, Lung-RADS)."""

    local_id: str
    long_axis_mm: float
    composition: Literal["solid", "part-solid", "ground-glass"]
    #: SNOMED CT lobe (e.g. 45653009 Upper lobe of right lung).
    body_site_code: str
    body_site_display: str = ""
    short_axis_mm: float | None = None
    solid_part_mm: float | None = None
    #: SNOMED CT 427359005 Solitary nodule of lung unless said otherwise.
    finding_code: str = "427359005"
    note: str = ""

    def __post_init__(self) -> None:
        if self.long_axis_mm <= 0 or (self.short_axis_mm is not None and self.short_axis_mm <= 0):
            raise ValueError("a nodule's sizes are positive millimetres")
        if self.short_axis_mm is not None and self.short_axis_mm > self.long_axis_mm:
            raise ValueError("the short axis cannot exceed the long axis")
        if (self.composition == "part-solid") != (self.solid_part_mm is not None):
            raise ValueError("a part-solid nodule, and only one, has the size of its solid part")


class Reporting(Protocol):
    """Reporting's FHIR API as the reading desk uses it; ``token`` is the user's access token (None: none)."""

    def read(self, report_id: str, *, token: str | None) -> DraftReport:
        """The report as stored now."""
        ...

    def sign(self, report: DraftReport, *, practitioner: str, token: str | None) -> DraftReport:
        """Sign ``report`` as read (``final``, ``practitioner`` the results interpreter); the signed version."""
        ...

    def sign_edited(
        self,
        report: DraftReport,
        *,
        practitioner: str,
        conclusion: str,
        nodules: tuple[AddedNodule, ...],
        token: str | None,
    ) -> DraftReport:
        """Sign ``report`` with the radiologist's conclusion and added nodules; the signed version."""
        ...
