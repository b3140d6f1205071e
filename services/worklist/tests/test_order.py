"""The worklist's order and filters: critical first (oldest critical first), then stat, asap, urgent, routine,
then the longest waiting; the SQL query returns the same order as the domain's key; filters and paging."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine

from radcds.adapters.db.engine import migrate
from radcds_worklist.adapters.db.studies import WorklistRepository
from radcds_worklist.domain.locks import ReadingLock
from radcds_worklist.domain.worklist import (
    CriticalState,
    StatusGroup,
    WorklistEntry,
    WorklistFilter,
    next_critical_state,
    person_name_display,
    primary_modality,
    priority_key,
    status_group,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def entry(uid: str, minutes_ago: float, **kw) -> WorklistEntry:
    return WorklistEntry(study_uid=uid, received_at=NOW - timedelta(minutes=minutes_ago), **kw)


def test_critical_comes_first_oldest_critical_first_then_stat_then_the_longest_waiting():
    routine_old = entry("1", 300)
    stat_new = entry("2", 5, order_priority="stat")
    urgent = entry("3", 60, order_priority="urgent")
    asap = entry("4", 10, order_priority="asap")
    critical_new = entry("5", 1, critical=True, critical_since=NOW - timedelta(minutes=1))
    critical_old = entry("6", 2, critical=True, critical_since=NOW - timedelta(minutes=30))
    routine_new = entry("7", 3)
    ordered = sorted([routine_old, stat_new, urgent, asap, critical_new, critical_old, routine_new], key=priority_key)
    assert [e.study_uid for e in ordered] == ["6", "5", "2", "4", "3", "1", "7"]


def test_report_statuses_fall_into_to_read_and_signed_groups():
    assert {s: status_group(s) for s in ("", "registered", "partial", "preliminary")} == dict.fromkeys(
        ("", "registered", "partial", "preliminary"), StatusGroup.TO_READ
    )
    assert {status_group(s) for s in ("final", "amended", "corrected", "appended")} == {StatusGroup.SIGNED}
    assert status_group("cancelled") is None


def test_default_filter_shows_only_studies_not_yet_signed():
    f = WorklistFilter()
    assert f.matches(entry("1", 1, report_status="preliminary"), now=NOW)
    assert f.matches(entry("2", 1), now=NOW)
    assert not f.matches(entry("3", 1, report_status="final"), now=NOW)
    assert WorklistFilter(status=StatusGroup.ALL).matches(entry("4", 1, report_status="cancelled"), now=NOW)


def test_mine_filter_keeps_only_the_users_live_locks():
    lock = ReadingLock("1", "ada", "Dr Ada", NOW - timedelta(minutes=5), NOW + timedelta(minutes=5))
    expired = ReadingLock("2", "ada", "Dr Ada", NOW - timedelta(minutes=30), NOW - timedelta(minutes=1))
    mine = WorklistFilter(mine="ada")
    assert mine.matches(entry("1", 1, lock=lock), now=NOW)
    assert not mine.matches(entry("2", 1, lock=expired), now=NOW)
    assert not WorklistFilter(mine="bob").matches(entry("1", 1, lock=lock), now=NOW)


def test_priority_and_modality_filters_match_exactly():
    stat_ct = entry("1", 1, order_priority="stat", modality="CT")
    assert WorklistFilter(priority="stat", modality="ct").matches(stat_ct, now=NOW)
    assert not WorklistFilter(priority="routine").matches(stat_ct, now=NOW)
    assert not WorklistFilter(priority="critical").matches(stat_ct, now=NOW)
    assert not WorklistFilter(modality="CR").matches(stat_ct, now=NOW)
    with pytest.raises(ValueError, match="priority must be one of"):
        WorklistFilter(priority="whenever")


def test_critical_state_only_moves_forward():
    assert next_critical_state("", CriticalState.NOTIFIED) is CriticalState.NOTIFIED
    assert next_critical_state("escalated", CriticalState.NOTIFIED) is CriticalState.ESCALATED
    assert next_critical_state("escalated", CriticalState.ACKNOWLEDGED) is CriticalState.ACKNOWLEDGED
    assert next_critical_state("acknowledged", CriticalState.ESCALATED) is CriticalState.ACKNOWLEDGED


def test_person_name_and_primary_modality_for_display():
    assert person_name_display("Doe^Jane^Q") == "Doe, Jane Q"
    assert person_name_display("Doe") == "Doe"
    assert primary_modality(["SR", "CT"]) == "CT" and primary_modality(["SR"]) == "SR" and primary_modality([]) == ""


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


def _random_entries(n: int, seed: int = 13) -> list[WorklistEntry]:
    rng = random.Random(seed)
    entries = []
    for i in range(n):
        critical = rng.random() < 0.1
        received = NOW - timedelta(seconds=rng.randrange(0, 86_400))
        entries.append(
            WorklistEntry(
                study_uid=f"1.2.{i}",
                received_at=received,
                modality=rng.choice(["CT", "CR", "MR"]),
                order_priority=rng.choice(["routine", "routine", "urgent", "asap", "stat"]),
                report_status=rng.choice(["", "preliminary", "final", "amended"]),
                critical=critical,
                critical_since=received + timedelta(seconds=rng.randrange(0, 600)) if critical else None,
            )
        )
    return entries


def _store(engine, entries):
    with engine.begin() as conn:
        repo = WorklistRepository(conn)
        for e in entries:
            repo.ensure_study(e.study_uid, now=e.received_at)
            repo.change_study(
                e.study_uid,
                {
                    "modality": e.modality,
                    "order_priority": e.order_priority,
                    "report_status": e.report_status,
                    "critical": e.critical,
                    "critical_since": e.critical_since,
                },
                now=NOW,
            )


def test_sql_order_of_the_list_is_the_domain_priority_key_order(engine):
    entries = _random_entries(600)
    _store(engine, entries)
    with engine.connect() as conn:
        listed = WorklistRepository(conn).entries(WorklistFilter(status=StatusGroup.ALL), now=NOW, limit=1000)
    assert [e.study_uid for e in listed] == [e.study_uid for e in sorted(entries, key=priority_key)]


def test_sql_filters_and_paging_match_the_domain_filter(engine):
    entries = _random_entries(300, seed=7)
    _store(engine, entries)
    f = WorklistFilter(modality="CT", priority="stat")
    expected = [e.study_uid for e in sorted(entries, key=priority_key) if f.matches(e, now=NOW)]
    with engine.connect() as conn:
        repo = WorklistRepository(conn)
        first = repo.entries(f, now=NOW, limit=5)
        rest = repo.entries(f, now=NOW, limit=1000, offset=5)
        default = repo.entries(WorklistFilter(), now=NOW)
    assert [e.study_uid for e in first + rest] == expected and len(first) == 5
    assert len(default) == 100 and all(e.report_status in ("", "preliminary") for e in default)
