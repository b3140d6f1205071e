"""Consultations (with their outgoing events) and card feedback, on SQLAlchemy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from radcds.adapters.db.tables import cds_consultations, cds_feedback


@dataclass(frozen=True, slots=True)
class Consultation:
    """One rated (or not rateable) order: the PAMA consultation and its event payload."""

    consultation_id: str
    service_id: str
    hook: str
    hook_instance: str
    order_id: str
    rule_id: str
    rule_version: str
    rating: str
    card_uuid: str | None
    event_payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One CDS Hooks feedback item."""

    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: list[str]
    override_reason_code: str | None


class ReferralRepository:
    """Writes consultations and feedback; reads the outbox and per-rule feedback rates."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_consultations(self, items: list[Consultation]) -> None:
        """Store consultations; their events are published by the outbox relay."""
        if not items:
            return
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                insert(cds_consultations),
                [
                    {
                        "consultation_id": c.consultation_id,
                        "service_id": c.service_id,
                        "hook": c.hook,
                        "hook_instance": c.hook_instance,
                        "order_id": c.order_id,
                        "rule_id": c.rule_id,
                        "rule_version": c.rule_version,
                        "rating": c.rating,
                        "card_uuid": c.card_uuid,
                        "event_payload": json.dumps(c.event_payload),
                        "created_at": now,
                    }
                    for c in items
                ],
            )

    def unpublished(self, limit: int = 200) -> list[tuple[str, str, dict[str, Any]]]:
        """(consultation id, order id, event payload) not yet on Kafka, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(
                    cds_consultations.c.consultation_id, cds_consultations.c.order_id, cds_consultations.c.event_payload
                )
                .where(cds_consultations.c.published_at.is_(None))
                .order_by(cds_consultations.c.created_at)
                .limit(limit)
            ).all()
        return [(r.consultation_id, r.order_id, json.loads(r.event_payload)) for r in rows]

    def mark_published(self, consultation_ids: list[str]) -> None:
        """Record that these consultations' events are on Kafka (one transaction)."""
        if not consultation_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(cds_consultations)
                .where(cds_consultations.c.consultation_id.in_(consultation_ids))
                .values(published_at=datetime.now(UTC))
            )

    def add_feedback(self, service_id: str, items: list[Feedback]) -> int:
        """Store feedback items once each (the same card may be reported twice); returns how many were new."""
        new = 0
        for f in items:
            try:
                with self._engine.begin() as conn:
                    conn.execute(
                        insert(cds_feedback).values(
                            service_id=service_id,
                            card_uuid=f.card_uuid,
                            outcome=f.outcome,
                            outcome_timestamp=f.outcome_timestamp,
                            accepted_suggestions=json.dumps(f.accepted_suggestions),
                            override_reason_code=f.override_reason_code,
                            received_at=datetime.now(UTC),
                        )
                    )
                new += 1
            except IntegrityError:
                continue
        return new

    def feedback_rates(self, service_id: str) -> list[dict[str, Any]]:
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
