"""FHIR R4 primitive values read leniently (R4 2.24.0.1 ``date`` and ``dateTime``), shared by the services that
read another system's FHIR (referral's prefetch, fusion's EHR context)."""

from __future__ import annotations

from datetime import date, datetime


def parse_date(value: object) -> date | None:
    """A FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or with a time) as a date; ``None`` if unreadable.
    A partial date reads as its first day."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:7]), 1)
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None
