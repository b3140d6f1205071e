"""OpenTelemetry tracing: one trace per study across HTTP, Kafka and gRPC.

Context crosses Kafka as a W3C ``traceparent`` header (W3C Trace Context, section 3.2) next
to the CloudEvents ``ce_*`` headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from threading import Lock

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

KafkaHeaders = list[tuple[str, bytes]]


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line to a file (local stack and tests)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(json.loads(s.to_json(indent=None))) + "\n" for s in spans]
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)
        return SpanExportResult.SUCCESS


def configure_tracing(*, service: str, otlp_endpoint: str | None, trace_file: Path | None) -> TracerProvider:
    """Install a tracer provider for ``service`` with the configured exporters."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"radcds-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if trace_file is not None:
        # Batched like OTLP so request latency does not include file writes.
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(trace_file), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    return provider


class _HeaderGetter(Getter[KafkaHeaders]):
    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == key.lower() and v]
        return values or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[KafkaHeaders]):
    def set(self, carrier: KafkaHeaders, key: str, value: str) -> None:
        carrier.append((key, value.encode("latin-1")))


def inject_headers(headers: KafkaHeaders) -> None:
    """Add ``traceparent``/``tracestate`` for the current span to Kafka headers."""
    propagate.inject(headers, setter=_HeaderSetter())


def extract_context(headers: Iterable[tuple[str, bytes]]) -> Context:
    """Read the W3C trace context from Kafka headers."""
    return propagate.extract(list(headers), getter=_HeaderGetter())


def attach(ctx: Context) -> object:
    """Make ``ctx`` current; pass the token to :func:`detach`."""
    return otel_context.attach(ctx)


def detach(token: object) -> None:
    """Undo :func:`attach`."""
    otel_context.detach(token)  # type: ignore[arg-type]
