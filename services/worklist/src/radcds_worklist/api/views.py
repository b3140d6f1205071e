"""What the templates show, built from the reading desk's results: rows of the list, the study page's findings,
overlay and assessment. Presentation only: names and numbers as a radiologist reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from radcds_worklist.domain.access import User
from radcds_worklist.domain.overlay import Overlay, build_overlay
from radcds_worklist.domain.windowing import window_for
from radcds_worklist.domain.worklist import WorklistEntry

STATUSES = (("to-read", "to read"), ("signed", "signed"), ("all", "all"))
PRIORITIES = (
    ("critical", "critical"),
    ("stat", "STAT"),
    ("asap", "ASAP"),
    ("urgent", "urgent"),
    ("routine", "routine"),
)
MODALITIES = ("CR", "DX", "CT", "MR", "US", "MG", "NM", "PT")
#: SNOMED CT lobes a radiologist may put an added nodule in.
LUNG_SITES = (
    ("45653009", "Upper lobe of right lung"),
    ("72481006", "Middle lobe of right lung"),
    ("266005", "Lower lobe of right lung"),
    ("44714003", "Upper lobe of left lung"),
    ("90572001", "Lower lobe of left lung"),
)


def duration(seconds: float) -> str:
    """A waiting time as a reader says it: "just now", "12 min", "3 h 5 min", "2 d"."""
    if seconds < 60:
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d"


@dataclass(frozen=True, slots=True)
class FindingText:
    """One AI finding on a row."""

    text: str
    critical: bool


@dataclass(frozen=True, slots=True)
class RowView:
    """One row of the list."""

    study_uid: str
    patient_name: str
    patient_id: str
    accession: str
    description: str
    modality: str
    body_part: str
    priority: str
    critical: bool
    critical_state: str
    critical_since_iso: str
    critical_age: str
    received_iso: str
    waiting: str
    report_status: str
    report_id: str
    findings: tuple[FindingText, ...]
    findings_pending: str
    lock_holder: str
    locked_by_me: bool
    lock_until: str
    css: str


def row_view(entry: WorklistEntry, user: User, now: datetime) -> RowView:
    """The list's row of ``entry`` as ``user`` sees it at ``now``."""
    lock = entry.lock if entry.lock is not None and entry.lock.live(now) else None
    summary = entry.findings
    findings = tuple(FindingText(code, summary.critical) for code in summary.codes)
    if not findings and summary.models:
        findings = (FindingText("no finding (" + ", ".join(summary.models) + ")", False),)
    pending = "declined: outside the validated envelope" if summary.declined and not summary.models else "pending"
    css = " ".join(c for c in ("critical" if entry.critical else "", entry.order_priority) if c)
    return RowView(
        study_uid=entry.study_uid,
        patient_name=entry.patient_name,
        patient_id=entry.patient_id,
        accession=entry.accession_number,
        description=entry.study_description,
        modality=entry.modality,
        body_part=entry.body_part,
        priority=entry.order_priority,
        critical=entry.critical,
        critical_state=entry.critical_state.value,
        critical_since_iso=entry.critical_since.isoformat() if entry.critical_since else "",
        critical_age=duration((now - entry.critical_since).total_seconds()) if entry.critical_since else "",
        received_iso=entry.received_at.isoformat(),
        waiting=duration(entry.waiting(now)),
        report_status=entry.report_status,
        report_id=entry.report_id or "",
        findings=findings,
        findings_pending=pending,
        lock_holder=lock.user_name if lock else "",
        locked_by_me=bool(lock and lock.user_id == user.id),
        lock_until=lock.expires_at.strftime("%H:%M UTC") if lock else "",
        css=css,
    )


@dataclass(frozen=True, slots=True)
class MeasurementView:
    """A measurement as shown: its name and value with unit."""

    display: str
    value: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A radiologist's recorded decision on a finding."""

    action: str
    text: str


@dataclass(frozen=True, slots=True)
class FindingView:
    """One model's analysis of one series on the study page."""

    finding_id: str
    title: str
    model_name: str
    model_version: str
    critical: bool
    not_analysed_reason: str
    measurements: tuple[MeasurementView, ...]
    location: str
    envelope: str
    decision: Decision | None = None


_UNITS = {"mm2": "mm²", "mm3": "mm³", "{ratio}": "", "{count}": "", "[hnsf'U]": "HU"}


def _measurement_value(value: Any, unit: str) -> str:
    if not isinstance(value, int | float):
        return "—"
    shown = _UNITS.get(unit, unit)
    number = f"{value:.2f}" if unit == "{ratio}" else f"{value:.0f}" if unit == "{count}" else f"{value:.1f}"
    return f"{number} {shown}".strip()


def finding_view(row: Mapping[str, Any], *, envelope: str, decision: Decision | None) -> FindingView:
    """A worklist_findings row (``data`` is the findings event's payload) as the study page shows it."""
    data: Mapping[str, Any] = row.get("data") or {}
    codes = [f.get("display") or f.get("code", "") for f in data.get("findings", [])]
    title = ", ".join(c for c in codes if c) or ("Not analysed" if row.get("not_analysed_reason") else "No finding")
    measurements = tuple(
        MeasurementView(m.get("display") or m.get("code", ""), _measurement_value(m.get("value"), m.get("unit", "")))
        for m in data.get("measurements", [])
    )
    location = (data.get("location") or {}).get("description", "")
    return FindingView(
        finding_id=str(row["finding_id"]),
        title=title,
        model_name=str(row["model_name"]),
        model_version=str(row["model_version"]),
        critical=bool(row.get("critical")),
        not_analysed_reason=str(row.get("not_analysed_reason") or ""),
        measurements=measurements,
        location=location,
        envelope=envelope,
        decision=decision,
    )


@dataclass(frozen=True, slots=True)
class KeyImage:
    """Where the key image is and which window it is rendered in (``window`` its name, ``window_query`` the WADO-RS
    ``window`` parameter; both empty for the image's own VOI)."""

    src: str
    window: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame: int
    window_query: str = ""


def key_image_of(rows: Sequence[Mapping[str, Any]], entry: WorklistEntry) -> tuple[KeyImage | None, Mapping[str, Any]]:
    """The key image of the study (the critical finding's first, else the first analysed one) and its row."""
    ranked = sorted(rows, key=lambda r: (not r.get("critical"), bool(r.get("not_analysed_reason"))))
    for row in ranked:
        data: Mapping[str, Any] = row.get("data") or {}
        key = data.get("keyImage")
        if not key:
            continue
        instance = data.get("instance") or {}
        series = str(instance.get("seriesInstanceUid") or row.get("series_uid", ""))
        window = window_for(entry.modality, entry.body_part, model=str(row.get("model_name", "")))
        frame = int(key.get("frameNumber") or 1)
        src = f"/studies/{entry.study_uid}/key-image?finding={row['finding_id']}"
        image = KeyImage(
            src,
            window.name if window else "",
            entry.study_uid,
            series,
            key["sopInstanceUid"],
            frame,
            window.query if window else "",
        )
        return image, row
    return None, {}


def overlay_of(row: Mapping[str, Any], *, columns: int, rows: int) -> Overlay | None:
    """The overlay of a findings row on its key image (``columns`` x ``rows``), or None."""
    data: Mapping[str, Any] = row.get("data") or {}
    location = data.get("location") or {}
    points = [(p["row"], p["column"]) for p in location.get("points", [])]
    measurements = {
        str(m.get("code")): (float(m["value"]), str(m.get("unit", "")))
        for m in data.get("measurements", [])
        if isinstance(m.get("value"), int | float)
    }
    return build_overlay(
        model=str(row.get("model_name", "")), points=points, measurements=measurements, columns=columns, rows=rows
    )


@dataclass(frozen=True, slots=True)
class AssessmentView:
    """fusion's assessment, as lines of text."""

    comparison: tuple[str, ...] = ()
    recommendations: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def _texts(items: Any, *keys: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in items or ():
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            for key in keys:
                if item.get(key):
                    out.append(str(item[key]))
                    break
    return tuple(out)


def assessment_view(payload: Mapping[str, Any] | None) -> AssessmentView | None:
    """fusion's assessment payload (``fusion-assessment-produced.v1``) as text lines, or None."""
    if not payload:
        return None
    sections = payload.get("sections")
    if isinstance(sections, Mapping):  # the report's own sentences, as fusion wrote them for the report
        return AssessmentView(
            comparison=_texts(sections.get("comparison")),
            recommendations=_texts(sections.get("recommendations")),
            missing=_texts(sections.get("missingContext")),
        )
    return AssessmentView(
        comparison=_texts(payload.get("comparisons"), "text", "summary", "display"),
        recommendations=_texts(payload.get("recommendations"), "text", "summary", "display"),
        missing=_texts(payload.get("missingContext") or payload.get("missing"), "text", "display", "name"),
    )


@dataclass
class ReportView:
    """The draft report as the page shows it."""

    id: str = ""
    version: str = ""
    status: str = ""
    conclusion: str = ""
    interpreter: str = ""
    signable: bool = False
    problems: list[str] = field(default_factory=list)


def _range_text(name: str, value: Any, unit: str) -> str:
    if not isinstance(value, Mapping):
        return ""
    low, high = value.get("min"), value.get("max")
    if low is not None and high is not None:
        return f"{name} {low:g} to {high:g}{unit}"
    if low is not None:
        return f"{name} ≥ {low:g}{unit}"
    if high is not None:
        return f"{name} ≤ {high:g}{unit}"
    return ""


def envelope_text(applies_to: Mapping[str, Any]) -> str:
    """A model's validated envelope (``applies_to`` of the model manifest) in words, e.g. "CR/DX, CHEST, PA view,
    age ≥ 18 y"."""
    parts = [
        "/".join(applies_to.get("modalities") or ()),
        "/".join(applies_to.get("body_parts") or ()),
        ("/".join(applies_to.get("view_positions") or ()) + " view") if applies_to.get("view_positions") else "",
        _range_text("slice", applies_to.get("slice_thickness_mm"), " mm"),
        _range_text("age", applies_to.get("patient_age_years"), " y"),
    ]
    return ", ".join(p for p in parts if p)
