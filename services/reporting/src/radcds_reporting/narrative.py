"""The readable preliminary report (``DiagnosticReport.presentedForm`` text/html and ``conclusion``)."""

from __future__ import annotations

import base64
import html
from typing import Any

DISCLAIMER = (
    "AI-generated PRELIMINARY report produced by radcds quantitative algorithms. "
    "NOT FOR DIAGNOSTIC USE. To be reviewed and signed by a radiologist."
)


def models_used(observations: list[dict[str, Any]]) -> list[str]:
    """Distinct model labels found in the Observations' ``method``."""
    return sorted({o.get("method", {}).get("text", "") for o in observations} - {""})


def conclusion(observations: list[dict[str, Any]]) -> str:
    """One paragraph: what was measured, what was not analysed and why."""
    measured = [o for o in observations if "valueQuantity" in o]
    skipped = [o for o in observations if "dataAbsentReason" in o]
    parts = [
        f"Preliminary AI-generated result, not for diagnostic use. {len(measured)} measurement(s)"
        f" by {', '.join(models_used(observations)) or 'no model'}."
    ]
    for o in skipped:
        parts.append(o.get("note", [{}])[0].get("text", "not analysed"))
    return " ".join(parts)


def render_html(*, study_label: str, observations: list[dict[str, Any]]) -> str:
    """The report as a small standalone HTML document."""
    rows = []
    for o in observations:
        name = html.escape(o.get("code", {}).get("text", ""))
        if "valueQuantity" in o:
            q = o["valueQuantity"]
            value = f"{q['value']} {html.escape(q.get('unit', ''))}"
        else:
            value = "not analysed: " + html.escape(o.get("note", [{}])[0].get("text", ""))
        rows.append(
            f"<tr><td>{name}</td><td>{value}</td><td>{html.escape(o.get('method', {}).get('text', ''))}</td></tr>"
        )
    models = "".join(f"<li>{html.escape(m)}</li>" for m in models_used(observations))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Preliminary imaging report</title></head><body>'
        f"<p><strong>{html.escape(DISCLAIMER)}</strong></p>"
        f"<h1>Preliminary imaging report</h1><p>Study: {html.escape(study_label)}</p>"
        "<h2>Measurements</h2><table><tr><th>Measurement</th><th>Value</th><th>Model</th></tr>"
        + "".join(rows)
        + "</table>"
        f"<h2>Models</h2><ul>{models}</ul>"
        "<h2>Comparison with priors</h2><p>Not yet available.</p>"
        "<h2>Recommendations</h2><p>Not yet available.</p>"
        "</body></html>"
    )


def html_attachment(document: str) -> dict[str, str]:
    """FHIR Attachment carrying the HTML report."""
    return {
        "contentType": "text/html",
        "language": "en",
        "data": base64.b64encode(document.encode("utf-8")).decode("ascii"),
        "title": "Preliminary imaging report (AI-generated, not for diagnostic use)",
    }
