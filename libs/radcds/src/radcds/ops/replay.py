"""Replaying a dead-letter topic: select records of ``<topic>.dlt``, summarise them without their contents, and
produce each one back to the topic it came from.

The kernel's consumer (:meth:`radcds.adapters.kafka.consumer.EventConsumer._dead_letter`) writes a dead letter
as the original record — its key, its value and all its headers (the CloudEvents ``ce_*`` attributes of the
Kafka binding's binary mode, section 3.2, ``content-type`` and the W3C ``traceparent``) — plus the
``radcds-dlt-*`` headers naming the original topic, partition and offset, the consumer group and the error.
A replay sends the key, the value and the original headers (the ``radcds-dlt-*`` ones taken off) to the
original topic, so every consumer group of that topic sees the event again; the handlers are idempotent on
the event id (``processed_events``), so a group that had processed it skips it.

The replay job reads the dead-letter topic as its own consumer group and commits the offset after each record
it has sent: a rerun of the same job replays nothing twice. A record that several groups dead-lettered (the
same original topic, partition and offset) is sent once per run. The summary names ids, types, error classes
and counts only: never the payload, the key (a Study Instance UID) or the error text (which may quote data).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from radcds.adapters.kafka.consumer import (
    DLT_ERROR,
    DLT_ERROR_CLASS,
    DLT_GROUP,
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TIME,
    DLT_TOPIC,
)
from radcds.domain.events import DEAD_LETTER_SUFFIX

#: Prefix of the headers the kernel's consumer adds when it dead-letters a record.
DLT_HEADER_PREFIX = "radcds-dlt-"
#: Header a replayed record carries: ``<dead-letter topic>/<partition>/<offset>`` it was replayed from.
REPLAYED_FROM = "radcds-replayed-from"
#: The replay job's consumer group when no content filter is given.
DEFAULT_GROUP = "radcds-replay"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        """The last value of header ``name``, decoded (a record dead-lettered twice carries the newest last)."""
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode("utf-8", "replace") if found else None

    @property
    def original_topic(self) -> str | None:
        """The topic the record was dead-lettered from (None: not written by the kernel's consumer)."""
        return self.header(DLT_TOPIC)

    @property
    def origin(self) -> tuple[str, str, str]:
        """Original topic, partition and offset: the same for every group that dead-lettered this record."""
        return (self.original_topic or "", self.header(DLT_PARTITION) or "", self.header(DLT_OFFSET) or "")

    def replay_headers(self, dead_letter_topic: str) -> list[tuple[str, bytes]]:
        """The original headers (``ce_*``, ``content-type``, trace context) and where the replay came from."""
        kept = [(k, v) for k, v in self.headers if not k.startswith(DLT_HEADER_PREFIX) and k != REPLAYED_FROM]
        return [*kept, (REPLAYED_FROM, f"{dead_letter_topic}/{self.partition}/{self.offset}".encode())]


class DeadLetterLog(Protocol):
    """A dead-letter topic read and committed as one consumer group, and a producer into the original topics."""

    def partitions(self) -> list[int]:
        """The partitions of the dead-letter topic (empty when the topic does not exist)."""

    def committed(self, partition: int) -> int | None:
        """The group's committed offset (the next record to read), None when it never committed."""

    def beginning(self, partition: int) -> int:
        """The first offset still held (retention may have deleted earlier ones)."""

    def end(self, partition: int) -> int:
        """The offset the next dead letter will get."""

    def offset_at(self, partition: int, timestamp_ms: int) -> int | None:
        """The first offset whose record time is at or after ``timestamp_ms``; None when there is none."""

    def read(self, partition: int, start: int, end: int) -> Iterator[DeadLetter]:
        """The records with ``start <= offset < end``, in order."""

    def send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Produce one record and wait for the broker's acknowledgement."""

    def commit(self, partition: int, next_offset: int) -> None:
        """Commit the group's offset: ``next_offset`` is the first record a rerun reads."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay: a range (offsets, record times) and content filters (ids, types, errors)."""

    partition: int | None = None
    from_offset: int | None = None
    #: Inclusive.
    to_offset: int | None = None
    since: datetime | None = None
    #: Inclusive.
    until: datetime | None = None
    event_ids: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    #: Substring of the error text (matched, never printed).
    error_contains: str | None = None
    consumer_groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.from_offset is not None and self.to_offset is not None and self.to_offset < self.from_offset:
            raise ValueError("to_offset is before from_offset")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise ValueError("until is before since")
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("since and until need a time zone (e.g. 2026-01-31T08:00:00Z)")

    def matches(self, record: DeadLetter) -> bool:
        """True when ``record`` passes every content filter given."""
        checks = (
            (self.event_ids, record.header("ce_id")),
            (self.event_types, record.header("ce_type")),
            (self.error_classes, record.header(DLT_ERROR_CLASS)),
            (self.consumer_groups, record.header(DLT_GROUP)),
        )
        if any(wanted and value not in wanted for wanted, value in checks):
            return False
        return self.error_contains is None or self.error_contains in (record.header(DLT_ERROR) or "")

    def default_group(self) -> str:
        """The replay job's consumer group: one per set of content filters, so that the records a filtered job
        passes over remain for another job (the range is not part of it: a rerun never goes back before the
        group's committed offset)."""
        filters = [
            *(f"id={v}" for v in sorted(self.event_ids)),
            *(f"type={v}" for v in sorted(self.event_types)),
            *(f"error-class={v}" for v in sorted(self.error_classes)),
            *(f"group={v}" for v in sorted(self.consumer_groups)),
            *([f"error-contains={self.error_contains}"] if self.error_contains is not None else []),
        ]
        if not filters:
            return DEFAULT_GROUP
        return f"{DEFAULT_GROUP}-{hashlib.sha256(chr(0).join(filters).encode()).hexdigest()[:12]}"


class Action(StrEnum):
    """What the job did with one dead letter."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would-replay"
    FILTERED = "filtered-out"
    #: Another group dead-lettered the same original record; it is sent once.
    SAME_ORIGIN = "same-origin-as-above"
    #: No ``radcds-dlt-original-topic`` header: not written by the kernel's consumer, cannot be replayed.
    NO_ORIGIN = "no-original-topic"


@dataclass(frozen=True, slots=True)
class Line:
    """One dead letter in the summary: identifiers and classes only, no content."""

    partition: int
    offset: int
    dead_lettered_at: str
    original: str
    consumer_group: str
    event_type: str
    event_id: str
    error_class: str
    action: Action


@dataclass
class Summary:
    """What a replay job saw and did."""

    dead_letter_topic: str
    group: str
    apply: bool
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)

    def count(self, action: Action) -> int:
        """How many dead letters got ``action``."""
        return sum(1 for line in self.lines if line.action is action)

    @property
    def complete(self) -> bool:
        """False when a selected record could not be replayed (it names no original topic)."""
        return self.count(Action.NO_ORIGIN) == 0

    def render(self) -> str:
        """The PHI-free text summary: one line per selected dead letter, then counts."""
        mode = "apply" if self.apply else "dry run (nothing sent, nothing committed; --apply to replay)"
        out = [f"dead-letter topic {self.dead_letter_topic}, replay group {self.group}: {mode}"]
        for partition, (start, end) in sorted(self.ranges.items()):
            span = f"offsets {start}..{end - 1}" if end > start else f"nothing to read (next offset {start})"
            out.append(f"  partition {partition}: {span}")
        shown = [line for line in self.lines if line.action is not Action.FILTERED]
        if shown:
            out.append(
                "partition/offset  dead-lettered at  original topic/partition/offset  group  ce_type  ce_id  error"
            )
        for line in shown:
            out.append(
                f"{line.partition}/{line.offset}  {line.dead_lettered_at}  {line.original}  {line.consumer_group}"
                f"  {line.event_type}  {line.event_id}  {line.error_class}  -> {line.action}"
            )
        by_cause = Counter((line.original.split("/")[0], line.event_type, line.error_class) for line in shown)
        for (topic, event_type, error_class), n in sorted(by_cause.items()):
            out.append(f"count {n}: {topic} {event_type} {error_class}")
        out.append(
            "total: "
            + ", ".join(f"{action.value} {self.count(action)}" for action in Action if self.count(action))
            + ("" if self.lines else "no dead letters in range")
        )
        return "\n".join(out)


def dead_letter_topic_of(topic: str) -> str:
    """``<topic>.dlt`` for an event topic; a dead-letter topic's own name is kept."""
    return topic if topic.endswith(DEAD_LETTER_SUFFIX) else topic + DEAD_LETTER_SUFFIX


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _range(log: DeadLetterLog, partition: int, selection: Selection) -> tuple[int, int]:
    """Offsets ``[start, end)`` of ``partition`` to read: the selected range after the group's committed offset."""
    start = max(log.beginning(partition), log.committed(partition) or 0, selection.from_offset or 0)
    end = log.end(partition)
    if selection.to_offset is not None:
        end = min(end, selection.to_offset + 1)
    if selection.since is not None:
        at = log.offset_at(partition, _millis(selection.since))
        start = max(start, end if at is None else at)
    if selection.until is not None:
        after = log.offset_at(partition, _millis(selection.until) + 1)
        if after is not None:
            end = min(end, after)
    return start, max(start, end)


def _line(record: DeadLetter, action: Action) -> Line:
    topic, partition, offset = record.origin
    return Line(
        partition=record.partition,
        offset=record.offset,
        dead_lettered_at=record.header(DLT_TIME)
        or datetime.fromtimestamp(record.timestamp_ms / 1000, UTC).isoformat(timespec="seconds"),
        original=f"{topic or '?'}/{partition or '?'}/{offset or '?'}",
        consumer_group=record.header(DLT_GROUP) or "?",
        event_type=record.header("ce_type") or "?",
        event_id=record.header("ce_id") or "?",
        error_class=record.header(DLT_ERROR_CLASS) or "?",
        action=action,
    )


def replay(*, log: DeadLetterLog, dead_letter_topic: str, group: str, selection: Selection, apply: bool) -> Summary:
    """Select the dead letters of ``dead_letter_topic`` and, with ``apply``, send each to its original topic and
    commit past it (at least once: a crash between the send and the commit sends that one record again)."""
    summary = Summary(dead_letter_topic=dead_letter_topic, group=group, apply=apply)
    seen: set[tuple[str, str, str]] = set()
    partitions = [p for p in log.partitions() if selection.partition in (None, p)]
    for partition in partitions:
        start, end = _range(log, partition, selection)
        summary.ranges[partition] = (start, end)
        if end <= start:
            continue
        for record in log.read(partition, start, end):
            action = _decide(record, selection, seen, apply=apply)
            summary.lines.append(_line(record, action))
            if action is Action.REPLAYED:
                log.send(
                    record.original_topic or "",
                    key=record.key,
                    value=record.value,
                    headers=record.replay_headers(dead_letter_topic),
                )
                log.commit(partition, record.offset + 1)
        if apply:
            log.commit(partition, end)  # past the filtered-out tail too: this job has seen it
    return summary


def _decide(record: DeadLetter, selection: Selection, seen: set[tuple[str, str, str]], *, apply: bool) -> Action:
    if not selection.matches(record):
        return Action.FILTERED
    if record.original_topic is None:
        return Action.NO_ORIGIN
    if record.origin in seen:
        return Action.SAME_ORIGIN
    seen.add(record.origin)
    return Action.REPLAYED if apply else Action.WOULD_REPLAY
