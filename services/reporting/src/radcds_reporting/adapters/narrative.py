"""The readable preliminary report: ``DiagnosticReport.presentedForm`` (text/html and application/pdf).

Both forms carry the same content (US Core DiagnosticReport for Report and Note exchange,
``presentedForm``): a statement that the report is AI-generated and preliminary, the
measurements, the models and versions that produced them, each study a model declined because
it was outside its validated envelope, and the three sections fusion's assessment fills
(comparison with priors, recommendations, missing clinical context: :mod:`radcds_reporting.adapters.assessments`),
marked as pending until it arrives.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from dataclasses import dataclass, field
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table

from radcds_reporting.adapters.assessments import PENDING, ReportContext
from radcds_reporting.adapters.fhir.entered_findings import is_radiologist_entered

DISCLAIMER = (
    "AI-generated PRELIMINARY report produced by radcds quantitative algorithms. "
    "NOT FOR DIAGNOSTIC USE. To be reviewed and signed by a radiologist."
)
TITLE = "Preliminary imaging report (AI-generated, not for diagnostic use)"
#: After a radiologist signed: the measurements are still the algorithms', the report is the radiologist's.
SIGNED_DISCLAIMER = (
    "Measurements produced by radcds quantitative algorithms (not for diagnostic use on their own), "
    "reviewed in this report signed by a radiologist."
)
SIGNED_TITLE = "Imaging report"
#: The sections fusion's assessment fills; ``data-section`` names them in the HTML.
CONTEXT_SECTIONS = (
    ("comparison", "Comparison with priors"),
    ("recommendations", "Recommendations"),
    ("missing-context", "Missing clinical context"),
)


@dataclass(frozen=True, slots=True)
class ReportContent:
    """What the readable report shows, extracted from the Observations."""

    study_label: str
    rows: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (name, value, model, critical)
    models: list[str] = field(default_factory=list)
    outside_envelope: list[tuple[str, str]] = field(default_factory=list)  # (model, reason)
    status: str = "preliminary"
    #: Who signed (a Practitioner reference) and when (FHIR instant); empty while preliminary.
    signed_by: str = ""
    signed_at: str = ""
    #: fusion's assessment; None while it has not arrived (the sections say pending).
    context: ReportContext | None = None

    @property
    def context_sections(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(key, title, lines)`` of the three context sections."""
        lines = dict(self.context.sections) if self.context is not None else {}
        return [(key, title, lines.get(key, (PENDING,))) for key, title in CONTEXT_SECTIONS]

    @property
    def signed(self) -> bool:
        """True once a radiologist signed (final, amended, corrected, appended)."""
        return bool(self.signed_by)

    @property
    def title(self) -> str:
        return f"{SIGNED_TITLE} ({self.status})" if self.signed else TITLE

    @property
    def disclaimer(self) -> str:
        return SIGNED_DISCLAIMER if self.signed else DISCLAIMER


#: The "Model" column of a finding the radiologist entered with the report (docs/reporting.md, structured findings).
RADIOLOGIST = "radiologist"


def _model(o: dict[str, Any]) -> str:
    return str(o.get("method", {}).get("text", "")).replace(" (not for diagnostic use)", "")


def _source(o: dict[str, Any]) -> str:
    return RADIOLOGIST if is_radiologist_entered(o) else _model(o)


def is_critical(o: dict[str, Any]) -> bool:
    """True when an Observation is interpreted as critical (v3 ObservationInterpretation AA/HH/LL)."""
    return any(c.get("code") in {"AA", "HH", "LL"} for i in o.get("interpretation", []) for c in i.get("coding", []))


def models_used(observations: list[dict[str, Any]]) -> list[str]:
    """Distinct model labels ("name vVERSION") found in the Observations' ``method``."""
    return sorted({_model(o) for o in observations} - {""})


def content_of(
    study_label: str,
    observations: list[dict[str, Any]],
    *,
    status: str = "preliminary",
    signed_by: str = "",
    signed_at: str = "",
    context: ReportContext | None = None,
) -> ReportContent:
    """The report content for a study's Observations and fusion's assessment (``context``)."""
    rows, outside = [], []
    for o in observations:
        name = o.get("code", {}).get("text", "")
        if "valueQuantity" in o:
            q = o["valueQuantity"]
            rows.append((name, f"{q['value']:g} {q.get('unit', '')}".strip(), _source(o), is_critical(o)))
        elif "valueCodeableConcept" in o:
            value = o["valueCodeableConcept"].get("text", "present").lower()
            where = next((n["text"] for n in o.get("note", []) if n.get("text", "").startswith("Location: ")), "")
            rows.append(
                (name, f"{value} ({where.removeprefix('Location: ')})" if where else value, _source(o), is_critical(o))
            )
        else:
            outside.append((_model(o), o.get("note", [{}])[0].get("text", "not analysed")))
    return ReportContent(study_label, rows, models_used(observations), outside, status, signed_by, signed_at, context)


def conclusion(
    observations: list[dict[str, Any]],
    *,
    status: str = "preliminary",
    signed_by: str = "",
    context: ReportContext | None = None,
) -> str:
    """One paragraph: what was measured, what is critical, what was not analysed and why, and
    fusion's comparison and recommendations (``context``) when they arrived.

    While preliminary it says the result is AI-generated; once a radiologist signed (``signed_by``,
    US Core DiagnosticReport ``conclusion``) it says who signed it and that the measurements are the
    algorithms' reviewed in the signed report: the AI origin stays in Provenance and presentedForm.
    """
    c = content_of("", observations)
    models = ", ".join(c.models) or "no model"
    measured_by_ai = [row for row in c.rows if row[2] != RADIOLOGIST]
    if signed_by:
        parts = [
            f"Report {status}, signed by {signed_by}. {len(measured_by_ai)} algorithm measurement(s)"
            f" by {models} reviewed in this signed report."
        ]
    else:
        measured = f"{len(measured_by_ai)} measurement(s) by {models}." if c.models else "No radcds measurement."
        parts = [f"Preliminary AI-generated result, not for diagnostic use. {measured}"]
    critical = [name for name, _, _, crit in c.rows if crit]
    if critical:
        parts.append(f"CRITICAL RESULT: {', '.join(critical)}.")
    for model, reason in c.outside_envelope:
        parts.append(f"Not analysed by {model}: {reason}")
    if context is not None:
        if context.comparison:
            parts.append("Comparison: " + " ".join(context.comparison))
        if context.recommendations:
            parts.append("Recommendation: " + " ".join(context.recommendations))
        if context.missing_context:
            parts.append("Missing clinical context: " + "; ".join(context.missing_context) + ".")
    return " ".join(parts)


def render_html(content: ReportContent) -> str:
    """The report as a small standalone HTML document."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{e(value)}</td><td>{e(model)}</td><td>{'CRITICAL' if crit else ''}</td></tr>"
        for name, value, model, crit in content.rows
    )
    models = "".join(f"<li>{e(m)}</li>" for m in content.models) or "<li>none</li>"
    outside = "".join(f"<li>{e(m)}: {e(r)}</li>" for m, r in content.outside_envelope)
    outside_html = (
        f"<ul>{outside}</ul>" if outside else "<p>Every model that ran accepted the study as within its envelope.</p>"
    )
    state = "pending" if content.context is None else "assessed"
    reserved = "".join(
        f'<section data-section="{key}"><h2>{e(title)}</h2>'
        + "".join(f'<p class="{state}">{e(line)}</p>' for line in lines)
        + "</section>"
        for key, title, lines in content.context_sections
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(content.title)}</title></head>'
        f"<body><p><strong>{e(content.disclaimer)}</strong></p>"
        f"<h1>{e(content.title)}</h1><p>Study: {e(content.study_label)}</p>"
        f"<p>Report status: {e(content.status)}</p>"
        + (f"<p>Signed by {e(content.signed_by)} at {e(content.signed_at)}</p>" if content.signed else "")
        + "<h2>Measurements</h2><table><tr><th>Measurement</th><th>Value</th><th>Model</th><th>Flag</th></tr>"
        f"{rows}</table>"
        f"<h2>Models and versions</h2><ul>{models}</ul>"
        f"<h2>Outside a model's validated envelope</h2>{outside_html}"
        f"{reserved}</body></html>"
    )


def render_pdf(content: ReportContent) -> bytes:
    """The same report as a PDF (reportlab; invariant output, so equal content gives equal bytes)."""
    styles = getSampleStyleSheet()
    e = html.escape  # reportlab paragraphs take a small XML markup
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, title=content.title, author="radcds", invariant=1)
    story: list[Any] = [
        Paragraph(f"<b>{e(content.disclaimer)}</b>", styles["Normal"]),
        Spacer(1, 8),
        Paragraph(e(content.title), styles["Title"]),
        Paragraph(f"Study: {e(content.study_label)}", styles["Normal"]),
        Paragraph(f"Report status: {e(content.status)}", styles["Normal"]),
    ]
    if content.signed:
        story.append(Paragraph(f"Signed by {e(content.signed_by)} at {e(content.signed_at)}", styles["Normal"]))
    story += [
        Paragraph("Measurements", styles["Heading2"]),
    ]
    data = [["Measurement", "Value", "Model", "Flag"]] + [
        [name, value, model, "CRITICAL" if crit else ""] for name, value, model, crit in content.rows
    ]
    story.append(Table(data))
    story.append(Paragraph("Models and versions", styles["Heading2"]))
    story.extend(Paragraph(e(m), styles["Normal"]) for m in content.models or ["none"])
    story.append(Paragraph("Outside a model's validated envelope", styles["Heading2"]))
    if content.outside_envelope:
        story.extend(Paragraph(f"{e(m)}: {e(r)}", styles["Normal"]) for m, r in content.outside_envelope)
    else:
        story.append(Paragraph("Every model that ran accepted the study as within its envelope.", styles["Normal"]))
    for _, title, lines in content.context_sections:
        story.append(Paragraph(e(title), styles["Heading2"]))
        style = styles["Italic"] if content.context is None else styles["Normal"]
        story.extend(Paragraph(e(line), style) for line in lines)
    doc.build(story)
    return buffer.getvalue()


def attachment(data: bytes, content_type: str, *, creation: str) -> dict[str, Any]:
    """FHIR R4 Attachment: base64 ``data``, ``size``, ``hash`` (base64 SHA-1, R4 2.24.0.13), title."""
    return {
        "contentType": content_type,
        "language": "en",
        "data": base64.b64encode(data).decode("ascii"),
        "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # noqa: S324 (FHIR mandates SHA-1)
        "title": TITLE,
        "creation": creation,
    }


def presented_forms(content: ReportContent, *, creation: str) -> list[dict[str, Any]]:
    """``presentedForm``: the HTML and the PDF of the report."""
    return [
        {**attachment(render_html(content).encode("utf-8"), "text/html", creation=creation), "title": content.title},
        {**attachment(render_pdf(content), "application/pdf", creation=creation), "title": content.title},
    ]
