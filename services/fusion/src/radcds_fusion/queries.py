"""Read queries behind fusion's API (no SQL in routes)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from radcds_fusion.adapters.repository import FusionRepository
from radcds_fusion.domain.recommendations import Recommendation


class RecommendationQueries:
    """Recommendations as the FHIR API reads them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, rec_id: str) -> tuple[Recommendation, int] | None:
        """One recommendation and its version."""
        with self._engine.connect() as conn:
            return FusionRepository(conn).recommendation(rec_id)

    def search(
        self, *, patient_id: str | None, states: Iterable[str] | None, patient_identifier: str | None = None
    ) -> list[tuple[Recommendation, int]]:
        """Recommendations by patient (radcds id or the EHR's identifier) and state."""
        with self._engine.connect() as conn:
            return FusionRepository(conn).search_recommendations(
                patient_id=patient_id, states=states, patient_identifier=patient_identifier
            )
