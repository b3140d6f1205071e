"""Read queries behind referral's API (no SQL in routes): the accept and override rates of cards, per rule."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, case, func, select

from radcds_referral.db.tables import cds_consultations, cds_feedback


class FeedbackQueries:
    """Card feedback as ``GET /cds-services/{id}/feedback`` reads it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def rates(self, service_id: str) -> list[dict[str, Any]]:
        """Accept and override counts and rates per rule for cards of ``service_id``."""
        accepted = func.sum(case((cds_feedback.c.outcome == "accepted", 1), else_=0))
        overridden = func.sum(case((cds_feedback.c.outcome == "overridden", 1), else_=0))
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(cds_consultations.c.rule_id, accepted.label("accepted"), overridden.label("overridden"))
                .select_from(
                    cds_feedback.join(cds_consultations, cds_consultations.c.card_uuid == cds_feedback.c.card_uuid)
                )
                .where(cds_feedback.c.service_id == service_id)
                .group_by(cds_consultations.c.rule_id)
                .order_by(cds_consultations.c.rule_id)
            ).all()
        out = []
        for r in rows:
            total = int(r.accepted or 0) + int(r.overridden or 0)
            out.append(
                {
                    "ruleId": r.rule_id,
                    "accepted": int(r.accepted or 0),
                    "overridden": int(r.overridden or 0),
                    "acceptRate": round(int(r.accepted or 0) / total, 4) if total else 0.0,
                    "overrideRate": round(int(r.overridden or 0) / total, 4) if total else 0.0,
                }
            )
        return out
