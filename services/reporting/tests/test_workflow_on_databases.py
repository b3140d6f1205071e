"""The sign-off and critical-result SQL (timestamps, locks, index rewrites) on SQLite and, marked
``postgres``, on a throwaway PostgreSQL; and migration 0006 indexing resources stored before it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import insert

from radcds.adapters.db.engine import make_engine, sqlite_url
from radcds.adapters.db.outbox import OutboxRelay
from radcds.domain.events import CRITICAL_RESULT_ESCALATED, REPORT_STORED
from radcds.domain.findings import StudyContext
from radcds_devstack.testing import LEGACY_SHARED_CHAIN, RecordingPublisher
from radcds_reporting.adapters.fhir.search import Criterion, TokenValue
from radcds_reporting.adapters.repository import FhirRepository
from radcds_reporting.db.tables import fhir_resources
from radcds_reporting.handlers import ReportingService
from radcds_reporting.use_cases.critical import CriticalResults
from radcds_reporting.use_cases.signoff import ReportSignOff

from .conftest import Clock, findings_event

STUDY = "1.2.826.0.1.3680043.2.1125.77"
CTX = StudyContext(patient_id="PID-77", accession_number="ACC-77", modality="CT", study_date="20260301")


def test_critical_result_escalates_and_report_signs_on_this_database(reporting_db):
    clock = Clock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    publisher = RecordingPublisher()
    ReportingService(
        engine=reporting_db,
        relay=OutboxRelay(reporting_db, publisher, name="reporting-outbox"),
        consumer_group="wf",
        clock=clock,
    ).handle(findings_event("wf-1", STUDY + ".1.1", critical=True, context=CTX, study=STUDY))
    critical = CriticalResults(
        engine=reporting_db,
        relay=OutboxRelay(reporting_db, publisher, name="reporting-outbox"),
        ack_timeout=timedelta(minutes=15),
        escalation_recipient="Practitioner/on-call",
        clock=clock,
    )
    clock.advance(minutes=14)
    assert critical.escalate_overdue() == []
    clock.advance(minutes=2)
    assert len(critical.escalate_overdue()) == 1
    with reporting_db.connect() as conn:
        criteria = [Criterion("identifier", "token", (TokenValue(None, "ACC-77"),))]
        (dr,) = FhirRepository(conn).search("DiagnosticReport", criteria=criteria)[1]
    signed, written = ReportSignOff(
        engine=reporting_db, relay=OutboxRelay(reporting_db, publisher, name="reporting-outbox"), clock=clock
    ).update(report_id=dr["id"], patch=[{"op": "replace", "path": "/status", "value": "final"}], user="Practitioner/r")
    assert written and signed["status"] == "final"
    kinds = [kind for kind, _, _, _ in publisher.events]
    assert kinds == [REPORT_STORED, CRITICAL_RESULT_ESCALATED, REPORT_STORED]
    with reporting_db.connect() as conn:
        finals = FhirRepository(conn).search(
            "DiagnosticReport", criteria=[Criterion("status", "token", (TokenValue(None, "final"),))]
        )
    assert finals[0] >= 1


def test_legacy_shared_migration_0006_indexes_resources_stored_before_it(tmp_path):
    engine = make_engine(sqlite_url(tmp_path / "old.db"))
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(LEGACY_SHARED_CHAIN).joinpath("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    old = {"resourceType": "Patient", "id": "p-old", "identifier": [{"system": "urn:x", "value": "MRN-OLD"}]}
    old["meta"] = {"versionId": "3", "lastUpdated": "2025-01-01T00:00:00.000Z"}
    with engine.begin() as conn:
        conn.execute(
            insert(fhir_resources).values(
                resource_type="Patient",
                id="p-old",
                version_id=3,
                last_updated=datetime(2025, 1, 1, tzinfo=UTC),
                subject="Patient/p-old",
                study_instance_uid="",
                content=json.dumps(old),
            )
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        repo = FhirRepository(conn)
        total, found = repo.search(
            "Patient", criteria=[Criterion("identifier", "token", (TokenValue("urn:x", "MRN-OLD"),))]
        )
        assert total == 1 and found[0]["id"] == "p-old"
        assert [v["meta"]["versionId"] for v in repo.history("Patient", "p-old")] == ["3"]
    engine.dispose()
