"""CloudEvents Kafka protocol binding 1.0, binary content mode, with JSON Schema validation.

Binary mode (binding section 3.2): every context attribute is a ``ce_<name>`` header, the
data content type is the ``content-type`` header and the message value is the JSON payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from radcds.domain.events import EVENT_KINDS, SCHEMA_BASE_URL, EventKind

CONTENT_TYPE_JSON = "application/json"


class InvalidEvent(ValueError):
    """A Kafka record that is not a valid radcds CloudEvent: it can never be processed."""


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A validated CloudEvent taken off Kafka."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime | None
    kind: EventKind
    payload: dict[str, Any]


def load_schema(schema_name: str) -> dict[str, Any]:
    """One of the payload JSON Schemas (draft-07) shipped in ``radcds/schemas``."""
    text = resources.files("radcds.schemas").joinpath(schema_name).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _validator(schema_name: str) -> Callable[[Any], Any]:
    # fastjsonschema compiles the schema to Python: about 25x faster than jsonschema here
    # (bench/run.py), which matters because every event is validated twice.
    return fastjsonschema.compile(load_schema(schema_name))


def validate_payload(kind: EventKind, payload: dict[str, Any]) -> None:
    """Raise :class:`InvalidEvent` if ``payload`` breaks the kind's JSON Schema."""
    try:
        _validator(kind.schema)(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = "/".join(str(p) for p in exc.path[1:]) or "(root)"
        raise InvalidEvent(f"{kind.type}: payload invalid at {where}: {exc.message}") from exc


def encode(
    kind: EventKind,
    payload: dict[str, Any],
    *,
    event_id: str,
    source: str,
    subject: str,
) -> ce_kafka.KafkaMessage:
    """Validate and encode one event; the partition key is the subject (a Study Instance UID)."""
    validate_payload(kind, payload)
    event = CloudEvent(
        attributes={
            "id": event_id,
            "source": source,
            "type": kind.type,
            "subject": subject,
            "time": datetime.now(UTC),
            "datacontenttype": CONTENT_TYPE_JSON,
            "dataschema": SCHEMA_BASE_URL + kind.schema,
            "partitionkey": subject,
        },
        data=payload,
    )
    return ce_kafka.to_binary(event, JSONFormat())


def decode(headers: list[tuple[str, bytes]], key: bytes | None, value: bytes | None) -> DecodedEvent:
    """Decode and validate a binary-mode record, or raise :class:`InvalidEvent`."""
    header_map = {k: v for k, v in headers if k.startswith("ce_") or k == "content-type"}
    if "ce_type" not in header_map:
        raise InvalidEvent("record has no ce_type header: not a binary-mode CloudEvent")
    try:
        event = ce_kafka.from_binary(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b""), JSONFormat()
        )
    except Exception as exc:  # the SDK raises several unrelated types for bad input
        raise InvalidEvent(f"record is not a valid CloudEvent: {exc}") from exc
    event_type = str(event.get_type())
    kind = EVENT_KINDS.get(event_type)
    if kind is None:
        raise InvalidEvent(f"unknown event type {event_type!r}")
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidEvent(f"{event_type}: payload is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidEvent(f"{event_type}: payload is not a JSON object")
    validate_payload(kind, data)
    return DecodedEvent(
        id=str(event.get_id()),
        type=event_type,
        source=str(event.get_source()),
        subject=str(event.get_subject() or ""),
        time=event.get_time(),
        kind=kind,
        payload=data,
    )
