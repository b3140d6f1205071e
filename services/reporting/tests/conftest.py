"""Fixtures shared by the reporting tests: databases, a recording publisher (a fake of our
EventPublisher port), findings events, a clock the test controls, and SMART signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.adapters.kafka.codec import DecodedEvent, decode, encode
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds_devstack.testing import migrated_engine

ROOT = Path(__file__).resolve().parents[3]
STUDY = "1.2.826.0.1.3680043.2.1125.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CTX = StudyContext(
    patient_id="PID-1",
    accession_number="ACC-1",
    modality="CT",
    study_date="20260102",
    study_time="101500",
    study_description="CT HEAD WO CONTRAST",
)
#: SNOMED CT 1386000 "Intracranial hemorrhage" (standards.md), as a model would report it.
INTRACRANIAL_HEMORRHAGE = Coding(codes.SNOMED_CT, "1386000", "Intracranial hemorrhage")


class Clock:
    """A clock the test moves."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def findings_event(
    event_id: str,
    sop: str,
    *,
    reason: str = "",
    value: float = 40.0,
    critical: bool = False,
    context: StudyContext = CTX,
    study: str = STUDY,
) -> DecodedEvent:
    """An ImagingFindingsProduced event as it arrives from Kafka (encoded and decoded)."""
    measurements: tuple[Measurement, ...] = ()
    if not reason:
        measurements = (Measurement(codes.HYPERDENSE_MEAN_HU, value, codes.UNIT_HOUNSFIELD),)
        if critical:
            measurements += (Measurement(codes.HYPERDENSE_REGION_COUNT, 1.0, "{count}"),)
    # As head_ct_hyperdensity reports a hemorrhage candidate: a coded finding and the critical flag.
    analysis = ImageAnalysis(
        InstanceReference(study, study + ".1", sop, CT_IMAGE_STORAGE),
        context,
        ModelIdentity("head_ct_hyperdensity", "1"),
        measurements=measurements,
        not_analysed_reason=reason,
        findings=(INTRACRANIAL_HEMORRHAGE,) if critical and not reason else (),
        critical=critical and not reason,
    )
    msg = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=event_id,
        source="/radcds/inference",
        subject=study,
    )
    return decode(list(msg.headers.items()), None, msg.value)


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    """A migrated SQLite reporting database."""
    e = make_engine(sqlite_url(tmp_path / "reporting.db"))
    migrate(e, chain="radcds_reporting.db")
    yield e
    e.dispose()


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.integration, pytest.mark.postgres])],
)
def reporting_db(request, tmp_path_factory) -> Iterator[Engine]:
    """A migrated reporting database per test module: SQLite, and a throwaway PostgreSQL (integration)."""
    label = request.module.__name__.rsplit(".", 1)[-1]
    scratch = tmp_path_factory.mktemp("reporting-db")
    with migrated_engine(
        "reporting", request.param, root=ROOT, scratch=scratch, label=label, chain="radcds_reporting.db"
    ) as engine:
        yield engine


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
