"""radcds-replay against the real broker: reporting dead-letters an event its database refuses, the cause is fixed,
the replay sends the event back and reporting's handler processes it once; a rerun replays nothing.

The poison is a trigger in reporting's own database that refuses the study's rows (SQLite, or PostgreSQL when the
session's stack runs it): the handler's error is not a ``RetryableError``, so the kernel's consumer retries it
``CONSUMER_MAX_RETRIES`` times and dead-letters it (radcds.adapters.kafka.consumer). Dropping the trigger is the fix.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from radcds.adapters.kafka.codec import encode
from radcds.adapters.kafka.consumer import DLT_ERROR_CLASS, DLT_GROUP
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, ImagingFindingsProduced, dead_letter_topic
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds.ops.replay import REPLAYED_FROM
from radcds_devstack.stack import LocalStack

from .helpers import eventually, producer, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

#: The console script libs/radcds/pyproject.toml registers, in this environment.
REPLAY = [str(Path(sys.executable).parent / "radcds-replay")]
TRIGGER = "itest_refuse_study"


class ReportingDatabase:
    """Reporting's database in the test stack: SQLite file, or the stack's PostgreSQL database."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    @contextmanager
    def _sqlite(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self._stack.run_dir / "data" / "reporting" / "reporting.db", timeout=30)) as c:
            yield c
            c.commit()

    def _postgres(self) -> psycopg.Connection[Any]:
        dsn = f"postgresql://postgres@{self._stack.host}:{self._stack.ports.postgres}/radcds_reporting"
        return psycopg.connect(dsn, autocommit=True)

    def refuse_study(self, study_uid: str) -> None:
        """Make every write of the study's FHIR rows fail (a non-retryable database error)."""
        if self._stack.postgres:
            with self._postgres() as conn:
                conn.execute(
                    f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.study_instance_uid = '{study_uid}' THEN RAISE EXCEPTION 'itest poison'; END IF; "
                    "RETURN NEW; END $$"
                )
                conn.execute(
                    f"CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE ON fhir_resources "
                    f"FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
                )
            return
        with self._sqlite() as conn:
            conn.execute(
                f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON fhir_resources "
                f"WHEN NEW.study_instance_uid = '{study_uid}' BEGIN SELECT RAISE(ABORT, 'itest poison'); END"
            )

    def fix(self) -> None:
        """Drop the trigger."""
        if self._stack.postgres:
            with self._postgres() as conn:
                conn.execute(f"DROP TRIGGER {TRIGGER} ON fhir_resources")
                conn.execute(f"DROP FUNCTION {TRIGGER}()")
            return
        with self._sqlite() as conn:
            conn.execute(f"DROP TRIGGER {TRIGGER}")

    def _query(self, sql: str, params: tuple[str, ...]) -> int:
        if self._stack.postgres:
            with self._postgres() as conn:
                row = conn.execute(sql.replace("?", "%s"), params).fetchone()
        else:
            with self._sqlite() as conn:
                row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])

    def reports_of(self, study_uid: str) -> int:
        return self._query(
            "SELECT count(*) FROM fhir_resources WHERE resource_type = 'DiagnosticReport' AND study_instance_uid = ?",
            (study_uid,),
        )

    def processed(self, event_id: str) -> int:
        return self._query(
            "SELECT count(*) FROM processed_events WHERE consumer_group = 'radcds-reporting' AND event_id = ?",
            (event_id,),
        )


def _send_findings(stack: LocalStack, study_uid: str, event_id: str) -> None:
    analysis = ImageAnalysis(
        InstanceReference(study_uid, study_uid + ".1", study_uid + ".1.1", "1.2.840.10008.5.1.4.1.1.2"),
        StudyContext(patient_id="ITEST-REPLAY", modality="CT", study_date="20260101"),
        ModelIdentity("pixel_statistics", "1"),
        measurements=(Measurement(codes.MEAN_PIXEL_VALUE, 42.0, codes.UNIT_HOUNSFIELD),),
    )
    message = encode(
        FINDINGS_PRODUCED,
        ImagingFindingsProduced(analysis).to_payload(),
        event_id=event_id,
        source="/itest",
        subject=study_uid,
    )
    p = producer(stack)
    key = message.key.encode() if isinstance(message.key, str) else message.key
    p.send(FINDINGS_PRODUCED.topic, key=key, value=message.value, headers=list(message.headers.items())).get(30)
    p.close()


def _replay(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REPLAY, FINDINGS_PRODUCED.topic, "--bootstrap-servers", stack.bootstrap, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _with_id(records: list[Any], event_id: str) -> list[Any]:
    return [r for r in records if dict(r.headers).get("ce_id") == event_id.encode()]


def test_event_dead_lettered_by_reporting_is_replayed_after_the_fix_and_processed_once(stack):
    study_uid = f"2.25.{uuid.uuid4().int}"
    event_id = str(uuid.uuid4())
    db = ReportingDatabase(stack)
    db.refuse_study(study_uid)
    _send_findings(stack, study_uid, event_id)

    dlt = dead_letter_topic(FINDINGS_PRODUCED.topic)
    [dead] = eventually(
        lambda: _with_id(read_topic(stack, dlt), event_id), timeout_s=120, what="reporting's dead letter"
    )
    assert dict(dead.headers)[DLT_GROUP] == b"radcds-reporting"
    # SQLAlchemy's class for the trigger's refusal: SQLite's RAISE(ABORT) / PostgreSQL's RAISE EXCEPTION (P0001)
    assert dict(dead.headers)[DLT_ERROR_CLASS] == (b"ProgrammingError" if stack.postgres else b"IntegrityError")
    assert db.reports_of(study_uid) == 0
    db.fix()

    dry = _replay(stack, "--ce-id", event_id)
    assert dry.returncode == 0, dry.stderr
    assert f"{event_id}" in dry.stdout
    assert "-> would-replay" in dry.stdout
    assert study_uid not in dry.stdout  # the key and the payload are never printed
    assert len(_with_id(read_topic(stack, FINDINGS_PRODUCED.topic), event_id)) == 1  # nothing sent

    applied = _replay(stack, "--ce-id", event_id, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "total: replayed 1" in applied.stdout
    eventually(lambda: db.reports_of(study_uid), timeout_s=120, what="the report of the replayed event")

    rerun = _replay(stack, "--ce-id", event_id, "--apply")
    assert rerun.returncode == 0, rerun.stderr
    assert "no dead letters in range" in rerun.stdout

    on_topic = _with_id(read_topic(stack, FINDINGS_PRODUCED.topic), event_id)
    assert len(on_topic) == 2  # the original and one replay
    original, replayed = sorted(on_topic, key=lambda r: REPLAYED_FROM in dict(r.headers))
    assert replayed.key == original.key
    assert replayed.value == original.value
    ce = [(k, v) for k, v in original.headers if k.startswith("ce_")]
    assert [(k, v) for k, v in replayed.headers if k.startswith("ce_")] == ce
    assert not any(k.startswith("radcds-dlt-") for k, _ in replayed.headers)
    assert db.reports_of(study_uid) == 1
    assert db.processed(event_id) == 1
