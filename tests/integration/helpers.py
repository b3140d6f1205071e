"""Helpers shared by the integration tests (Kafka readers, polling)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kafka import KafkaConsumer, KafkaProducer

from radcds_devstack.stack import LocalStack

T = TypeVar("T")
#: The hospital's MRN identifier system in the test stack: the test EHR's Patients carry it (fhir/ehr_patients.py),
#: fusion looks patients up in the EHR and matches CDS Hooks orders by it.
HOSPITAL_MRN_SYSTEM = "https://radcds.example.org/fhir/sid/test-mrn"


def eventually(
    probe: Callable[[], T | None], *, timeout_s: float = 120.0, interval_s: float = 0.5, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy (no timing assertion: a generous bound)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f}s")


def producer(stack: LocalStack) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=[stack.bootstrap], acks="all")


def read_topic(stack: LocalStack, topic: str, *, idle_ms: int = 2000) -> list[Any]:
    """Every record currently in ``topic``."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[stack.bootstrap],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=idle_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def fhir(stack: LocalStack, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"http://{stack.host}:{stack.ports.reporting}/fhir/{path}", params=params, timeout=10)
    return r.json()  # type: ignore[no-any-return]


def spans(trace_dir: Path) -> list[dict[str, Any]]:
    """Every span written by the services' JSON-lines exporters."""
    out = []
    for f in sorted(trace_dir.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                span = json.loads(line)
                span["_service"] = f.stem
                out.append(span)
    return out
