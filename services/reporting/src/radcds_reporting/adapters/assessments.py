"""fusion's assessment of a study as the report shows it (``org.radcds.fusion.assessment.produced.v1``).

Reporting keeps the latest version per study (``report_context_assessments``) and fills the
report's three context sections from it: "Comparison with priors" (LOINC 18834-2), "Recommendations"
(LOINC 18783-1) and "Missing clinical context" (local code), in the presented form, the
DiagnosticReport's conclusion and the ORU^R01. The report never waits for it: a report written
before the assessment says the sections are pending and is rewritten when it arrives
(docs/reporting.md, "Context from fusion").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from radcds_reporting.db.tables import report_context_assessments

#: What a section says when the assessment has nothing for it.
NO_COMPARISON = "No measured finding to compare with a prior."
NO_RECOMMENDATION = "No guideline follow-up applies to the findings of this study."
NO_MISSING_CONTEXT = "None: the clinical context the assessment needs was available."
#: What the three sections say while fusion's assessment has not arrived.
PENDING = (
    "Pending: the assessment in the patient's context (priors, follow-up guidelines) has not arrived yet; "
    "this report is updated when it does."
)


@dataclass(frozen=True, slots=True)
class ReportContext:
    """The lines of the three context sections of one assessment version."""

    version: int
    assessed_at: str
    comparison: tuple[str, ...]
    recommendations: tuple[str, ...]
    missing_context: tuple[str, ...]
    critical: bool = False
    critical_reasons: tuple[str, ...] = ()

    @property
    def sections(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(key, lines)`` of each section, with the standing text where a section is empty."""
        return (
            ("comparison", self.comparison or (NO_COMPARISON,)),
            ("recommendations", self.recommendations or (NO_RECOMMENDATION,)),
            ("missing-context", self.missing_context or (NO_MISSING_CONTEXT,)),
        )


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def context_from_payload(payload: dict[str, Any]) -> ReportContext:
    """The report's view of an assessment event payload (schema fusion-assessment-produced.v1.json).

    A finding whose confidence is below high adds a line to the comparison saying why, in the
    assessment's words (a pacemaker over the heart, an input outside a model's envelope).
    """
    sections = payload["sections"]
    comparison = [_one_line(line) for line in sections["comparison"]]
    for item in payload.get("confidence", []):
        if item.get("level") != "high" and item.get("reasons"):
            reasons = "; ".join(_one_line(r).rstrip(".") for r in item["reasons"])
            comparison.append(f"Confidence {item['level']} ({item.get('label') or item['code']}): {reasons}.")
    critical_reasons = tuple(_one_line(r) for r in payload.get("criticalReasons", []))
    recommendations = tuple(_one_line(line) for line in sections["recommendations"])
    if payload.get("critical"):
        recommendations = (
            *(f"CRITICAL: {r} The care team must be told now." for r in critical_reasons or ("critical result",)),
            *recommendations,
        )
    return ReportContext(
        version=int(payload["version"]),
        assessed_at=str(payload["assessedAt"]),
        comparison=tuple(line for line in comparison if line),
        recommendations=tuple(line for line in recommendations if line),
        missing_context=tuple(line for line in (_one_line(m) for m in sections["missingContext"]) if line),
        critical=bool(payload.get("critical")),
        critical_reasons=critical_reasons,
    )


def _parse_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def store_assessment(conn: Connection, payload: dict[str, Any], *, now: datetime) -> bool:
    """Keep ``payload`` as the study's assessment; False (nothing written) for a version not newer.

    Versions can arrive out of order after a redelivery: only a higher ``version`` replaces.
    """
    t = report_context_assessments
    study_uid = str(payload["studyInstanceUid"])
    version = int(payload["version"])
    row = {
        "patient_id": str(payload["patientId"]),
        "version": version,
        "assessed_at": _parse_instant(str(payload["assessedAt"])),
        "payload": json.dumps(payload, sort_keys=True),
        "received_at": now,
    }
    known = conn.execute(select(t.c.version).where(t.c.study_instance_uid == study_uid)).scalar_one_or_none()
    if known is None:
        conn.execute(insert(t).values(study_instance_uid=study_uid, **row))
        return True
    if version <= known:
        return False
    conn.execute(update(t).where(t.c.study_instance_uid == study_uid).values(**row))
    return True


def context_for(conn: Connection, study_instance_uid: str) -> ReportContext | None:
    """The latest assessment of the study as report sections; None when none arrived."""
    t = report_context_assessments
    payload = conn.execute(select(t.c.payload).where(t.c.study_instance_uid == study_instance_uid)).scalar_one_or_none()
    return None if payload is None else context_from_payload(json.loads(payload))
