"""radcds-replay over a fake of our DeadLetterLog port: selection, replay to the original topic, committed offsets,
the PHI-free summary, and the headers the kernel's consumer really writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from radcds.adapters.kafka.consumer import (
    DLT_ERROR,
    DLT_ERROR_CLASS,
    DLT_GROUP,
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TIME,
    DLT_TOPIC,
    EventConsumer,
    RetryPolicy,
)
from radcds.domain.events import FINDINGS_PRODUCED, STUDY_AVAILABLE
from radcds.ops import replay_cli
from radcds.ops.replay import (
    DEFAULT_GROUP,
    REPLAYED_FROM,
    Action,
    DeadLetter,
    Selection,
    dead_letter_topic_of,
    replay,
)
from radcds.runtime.metrics import ServiceMetrics

DLT = FINDINGS_PRODUCED.topic + ".dlt"
T0 = datetime(2026, 1, 31, 8, 0, tzinfo=UTC)
PAYLOAD = b'{"patient": {"name": "DOE^JANE"}, "studyInstanceUid": "2.25.1"}'
STUDY_KEY = b"2.25.123456789"
ERROR_TEXT = "(psycopg.errors.RaiseException) poisoned [parameters: ('DOE^JANE',)]"


class FakeDeadLetterLog:
    """Fake of our DeadLetterLog port: one partitioned dead-letter topic, a group's offsets, the records sent."""

    def __init__(self, partitions: dict[int, list[DeadLetter]]) -> None:
        self.records = partitions
        self.offsets: dict[int, int] = {}
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.deleted_before: dict[int, int] = {}

    def partitions(self) -> list[int]:
        return sorted(self.records)

    def committed(self, partition: int) -> int | None:
        return self.offsets.get(partition)

    def beginning(self, partition: int) -> int:
        return self.deleted_before.get(partition, 0)

    def end(self, partition: int) -> int:
        return len(self.records[partition])

    def offset_at(self, partition: int, timestamp_ms: int) -> int | None:
        return next((r.offset for r in self.records[partition] if r.timestamp_ms >= timestamp_ms), None)

    def read(self, partition: int, start: int, end: int) -> Iterator[DeadLetter]:
        yield from (r for r in self.records[partition] if start <= r.offset < end)

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, key, value, headers))

    def commit(self, partition: int, next_offset: int) -> None:
        self.offsets[partition] = next_offset


def _ce_headers(event_id: str, event_type: str = FINDINGS_PRODUCED.type) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", b"/radcds/inference"),
        ("ce_subject", STUDY_KEY),
        ("content-type", b"application/json"),
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]


def _dead_letter(
    offset: int,
    event_id: str,
    *,
    group: str = "radcds-reporting",
    error_class: str = "IntegrityError",
    original_offset: int | None = None,
    event_type: str = FINDINGS_PRODUCED.type,
    at: datetime = T0,
) -> DeadLetter:
    headers = [
        *_ce_headers(event_id, event_type),
        (DLT_TOPIC, FINDINGS_PRODUCED.topic.encode()),
        (DLT_PARTITION, b"3"),
        (DLT_OFFSET, str(100 + offset if original_offset is None else original_offset).encode()),
        (DLT_GROUP, group.encode()),
        (DLT_ERROR, ERROR_TEXT.encode()),
        (DLT_ERROR_CLASS, error_class.encode()),
        (DLT_TIME, at.isoformat().encode()),
    ]
    return DeadLetter(0, offset, int(at.timestamp() * 1000), STUDY_KEY, PAYLOAD, tuple(headers))


def _run(log: FakeDeadLetterLog, *, apply: bool, selection: Selection | None = None, group: str = DEFAULT_GROUP):
    return replay(log=log, dead_letter_topic=DLT, group=group, selection=selection or Selection(), apply=apply)


def test_dry_run_lists_each_dead_letter_and_sends_and_commits_nothing():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-1"), _dead_letter(1, "e-2")]})
    summary = _run(log, apply=False)
    assert [line.action for line in summary.lines] == [Action.WOULD_REPLAY, Action.WOULD_REPLAY]
    assert log.sent == []
    assert log.offsets == {}
    assert "dry run" in summary.render()


def test_apply_sends_key_value_and_original_headers_to_the_original_topic_without_dead_letter_headers():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-1")]})
    summary = _run(log, apply=True)
    assert summary.count(Action.REPLAYED) == 1
    [(topic, key, value, headers)] = log.sent
    assert topic == FINDINGS_PRODUCED.topic
    assert key == STUDY_KEY
    assert value == PAYLOAD
    assert headers[:-1] == _ce_headers("e-1")
    assert headers[-1] == (REPLAYED_FROM, f"{DLT}/0/0".encode())
    assert log.offsets == {0: 1}


def test_rerun_of_an_applied_job_replays_nothing():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-1"), _dead_letter(1, "e-2")]})
    _run(log, apply=True)
    again = _run(log, apply=True)
    assert len(log.sent) == 2
    assert again.lines == []
    assert again.ranges == {0: (2, 2)}
    assert "no dead letters in range" in again.render()


def test_dead_letter_added_after_a_replay_is_the_only_one_the_rerun_replays():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-1")]})
    _run(log, apply=True)
    log.records[0].append(_dead_letter(1, "e-2"))
    again = _run(log, apply=True)
    assert [line.event_id for line in again.lines] == ["e-2"]
    assert [h for _, _, _, h in log.sent][-1][1] == ("ce_id", b"e-2")


def test_record_dead_lettered_by_three_groups_is_replayed_once():
    groups = ["radcds-fusion", "radcds-reporting", "radcds-worklist"]
    log = FakeDeadLetterLog({0: [_dead_letter(i, "e-1", group=g, original_offset=7) for i, g in enumerate(groups)]})
    summary = _run(log, apply=True)
    assert [line.action for line in summary.lines] == [Action.REPLAYED, Action.SAME_ORIGIN, Action.SAME_ORIGIN]
    assert len(log.sent) == 1
    assert log.offsets == {0: 3}


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(event_ids=frozenset({"e-2"})), ["e-2"]),
        (Selection(event_types=frozenset({STUDY_AVAILABLE.type})), ["e-3"]),
        (Selection(error_classes=frozenset({"InvalidEvent"})), ["e-4"]),
        (Selection(consumer_groups=frozenset({"radcds-worklist"})), ["e-4"]),
        (Selection(error_contains="poisoned"), ["e-1", "e-2", "e-3", "e-4"]),
        (Selection(error_contains="timeout"), []),
        (Selection(event_ids=frozenset({"e-1", "e-4"}), error_classes=frozenset({"IntegrityError"})), ["e-1"]),
    ],
)
def test_content_filters_select_the_matching_dead_letters_only(selection, expected):
    log = FakeDeadLetterLog(
        {
            0: [
                _dead_letter(0, "e-1"),
                _dead_letter(1, "e-2"),
                _dead_letter(2, "e-3", event_type=STUDY_AVAILABLE.type),
                _dead_letter(3, "e-4", group="radcds-worklist", error_class="InvalidEvent"),
            ]
        }
    )
    summary = _run(log, apply=True, selection=selection)
    assert [dict(h)["ce_id"].decode() for _, _, _, h in log.sent] == expected
    assert summary.count(Action.FILTERED) == 4 - len(expected)


def test_filtered_job_has_its_own_group_so_what_it_passes_over_stays_for_another_job():
    by_id = Selection(event_ids=frozenset({"e-2"}))
    assert by_id.default_group() != DEFAULT_GROUP
    assert by_id.default_group() == Selection(event_ids=frozenset({"e-2"})).default_group()
    assert by_id.default_group() != Selection(event_types=frozenset({"e-2"})).default_group()
    assert Selection(from_offset=5).default_group() == DEFAULT_GROUP  # a range is not a filter


def test_since_and_until_select_by_the_time_a_record_was_dead_lettered():
    log = FakeDeadLetterLog({0: [_dead_letter(i, f"e-{i}", at=T0 + timedelta(hours=i)) for i in range(5)]})
    selection = Selection(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    summary = _run(log, apply=False, selection=selection)
    assert [line.event_id for line in summary.lines] == ["e-1", "e-2", "e-3"]
    assert summary.ranges == {0: (1, 4)}


def test_since_after_the_last_dead_letter_selects_nothing():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-0")]})
    summary = _run(log, apply=False, selection=Selection(since=T0 + timedelta(days=1)))
    assert summary.lines == []


def test_offset_range_is_inclusive_and_starts_no_earlier_than_retention_and_the_committed_offset():
    log = FakeDeadLetterLog({0: [_dead_letter(i, f"e-{i}") for i in range(6)]})
    log.deleted_before[0] = 1
    assert [line.offset for line in _run(log, apply=False, selection=Selection(to_offset=2)).lines] == [1, 2]
    log.offsets[0] = 3
    selection = Selection(from_offset=2, to_offset=4)
    assert [line.offset for line in _run(log, apply=False, selection=selection).lines] == [3, 4]


def test_partition_option_reads_that_partition_only():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-a")], 1: [_dead_letter(0, "e-b", original_offset=9)]})
    summary = _run(log, apply=True, selection=Selection(partition=1))
    assert [line.event_id for line in summary.lines] == ["e-b"]
    assert log.offsets == {1: 1}


def test_summary_names_ids_types_and_error_classes_but_no_payload_key_or_error_text():
    log = FakeDeadLetterLog({0: [_dead_letter(0, "e-1"), _dead_letter(1, "e-2", error_class="InvalidEvent")]})
    text = _run(log, apply=True).render()
    for shown in ("e-1", "e-2", FINDINGS_PRODUCED.type, "IntegrityError", "InvalidEvent", "radcds-reporting"):
        assert shown in text
    for hidden in ("DOE", "JANE", STUDY_KEY.decode(), "poisoned", "parameters", "patient"):
        assert hidden not in text
    assert f"count 1: {FINDINGS_PRODUCED.topic} {FINDINGS_PRODUCED.type} IntegrityError" in text
    assert "total: replayed 2" in text


def test_record_without_an_original_topic_header_is_reported_and_not_replayed():
    stray = DeadLetter(0, 0, 0, None, b"{}", tuple(_ce_headers("e-stray")))
    log = FakeDeadLetterLog({0: [stray, _dead_letter(1, "e-1")]})
    summary = _run(log, apply=True)
    assert [line.action for line in summary.lines] == [Action.NO_ORIGIN, Action.REPLAYED]
    assert not summary.complete
    assert len(log.sent) == 1


def test_record_dead_lettered_again_after_a_replay_is_replayed_with_one_replayed_from_header():
    first = _dead_letter(0, "e-1")
    log = FakeDeadLetterLog({0: [first]})
    _run(log, apply=True)
    [(_, _, _, replayed)] = log.sent
    again = DeadLetter(0, 1, first.timestamp_ms, first.key, first.value, (*replayed, *first.headers[7:]))
    log.records[0].append(again)
    _run(log, apply=True)
    headers = log.sent[-1][3]
    assert [v for k, v in headers if k == REPLAYED_FROM] == [f"{DLT}/0/1".encode()]
    assert not any(k.startswith("radcds-dlt-") for k, _ in headers)


class _CapturingPublisher:
    """Fake of the dead-letter side of our publisher: keeps what ``send_raw`` is given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def send_raw(self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        self.records.append((topic, key, value, headers))


def test_what_the_kernels_consumer_dead_letters_is_replayed_to_its_topic_with_its_original_key_and_headers():
    publisher = _CapturingPublisher()
    consumer = EventConsumer(
        SimpleNamespace(),  # the Kafka consumer is not used to dead-letter
        lambda event: None,
        publisher,  # type: ignore[arg-type]
        group_id="radcds-reporting",
        policy=RetryPolicy(),
        metrics=ServiceMetrics(),
    )
    original = SimpleNamespace(
        topic=FINDINGS_PRODUCED.topic, partition=4, offset=41, key=STUDY_KEY, value=PAYLOAD, headers=_ce_headers("e-9")
    )
    consumer._dead_letter(original, RuntimeError("handler bug"))  # type: ignore[arg-type]
    [(topic, key, value, headers)] = publisher.records
    assert topic == DLT
    log = FakeDeadLetterLog({0: [DeadLetter(0, 0, 0, key, value, tuple(headers))]})
    summary = _run(log, apply=True)
    assert summary.lines[0].original == f"{FINDINGS_PRODUCED.topic}/4/41"
    assert summary.lines[0].error_class == "RuntimeError"
    [(replay_topic, replay_key, replay_value, replay_headers)] = log.sent
    assert (replay_topic, replay_key, replay_value) == (FINDINGS_PRODUCED.topic, STUDY_KEY, PAYLOAD)
    assert replay_headers[:-1] == _ce_headers("e-9")


def test_event_topic_names_its_dead_letter_topic_and_a_dead_letter_topic_names_itself():
    assert dead_letter_topic_of(FINDINGS_PRODUCED.topic) == DLT
    assert dead_letter_topic_of(DLT) == DLT


@pytest.mark.parametrize(
    "argv",
    [
        [FINDINGS_PRODUCED.topic, "--since", "2026-01-31T08:00:00"],
        [FINDINGS_PRODUCED.topic, "--since", "yesterday"],
        [FINDINGS_PRODUCED.topic, "--apply", "--dry-run"],
    ],
)
def test_command_line_without_a_time_zone_or_with_both_modes_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        replay_cli.parser().parse_args(argv)
    assert exited.value.code == 2
    assert "radcds-replay" in capsys.readouterr().err


def test_command_line_defaults_to_a_dry_run_of_every_dead_letter():
    args = replay_cli.parser().parse_args([FINDINGS_PRODUCED.topic])
    assert args.apply is False
    assert (args.ce_id, args.from_offset, args.since) == ([], None, None)


def test_command_line_with_an_empty_range_exits_2_before_connecting(capsys):
    assert replay_cli.main([FINDINGS_PRODUCED.topic, "--from-offset", "5", "--to-offset", "2"]) == 2
    assert "to_offset is before from_offset" in capsys.readouterr().err


def test_selection_refuses_a_time_without_zone():
    with pytest.raises(ValueError, match="time zone"):
        Selection(since=datetime(2026, 1, 31, 8, 0))
