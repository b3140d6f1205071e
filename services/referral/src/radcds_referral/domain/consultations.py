"""Consultations and card feedback: what referral records of each CDS Hooks call, and the port that stores them.

A consultation is one rated (or not rateable) order: the PAMA consultation (Argonaut "CDS Hooks for PAMA",
``pama-rating-consult-id``) with the ``imaging-order.evaluated`` event that announces it. A feedback item is one
CDS Hooks 2.0 "Feedback" object about a card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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


class ConsultationRepository(Protocol):
    """The port the use case stores consultations and card feedback through."""

    def add_consultations(self, items: list[Consultation]) -> None:
        """Store consultations and, in the same transaction, their events (published after the commit)."""

    def add_feedback(self, service_id: str, items: list[Feedback]) -> int:
        """Store feedback items once each (the same card may be reported twice); returns how many were new."""
