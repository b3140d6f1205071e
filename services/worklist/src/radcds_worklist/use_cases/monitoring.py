"""Monitoring's use cases: profile each analysis's input, show a model version over time, set thresholds, and alert
when a monitored rate crosses one (a ``model_alerts`` row, a MODEL_ALERT_RAISED event, a live ``alert`` change and
the Prometheus counter ``radcds_worklist_model_alerts_total``)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, Engine

from radcds.adapters.db.outbox import enqueue
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain.events import FINDINGS_PRODUCED, MODEL_ALERT_RAISED, ImagingFindingsProduced, ModelAlertRaised
from radcds.domain.findings import ModelIdentity
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.adapters.db.live import append_live
from radcds_worklist.adapters.db.monitoring import MonitoringRepository
from radcds_worklist.domain.access import User
from radcds_worklist.domain.monitoring import (
    Acquisition,
    DeclaredInputs,
    Metric,
    ModelMonitoring,
    crossed,
    declared_by_model,
    input_profile,
    monitor,
    recent_window,
)
from radcds_worklist.domain.worklist import finding_id as analysis_finding_id

log = logging.getLogger(__name__)
ALERT_NAMESPACE = uuid.UUID("7d3f9a12-4c6e-5b80-a1d2-93e4f5a6b7c8")
#: Thresholds used until an admin sets one (a rate above it alerts).
DEFAULT_THRESHOLDS: dict[str, float] = {
    Metric.REJECTION_RATE: 0.3,
    Metric.DISAGREEMENT_RATE: 0.3,
    Metric.OUTSIDE_ENVELOPE_RATE: 0.5,
    Metric.DRIFT_MANUFACTURER: 0.2,
    Metric.DRIFT_MANUFACTURER_MODEL: 0.2,
    Metric.DRIFT_KVP: 0.2,
    Metric.DRIFT_SLICE_THICKNESS: 0.2,
    Metric.DRIFT_PATIENT_AGE: 0.2,
}


class AcquisitionReader(Protocol):
    """The port monitoring reads an instance's acquisition attributes through (imaging's DICOMweb)."""

    def acquisition(self, study: str, series: str, instance: str) -> Acquisition:
        """The instance's monitored attributes; raises when they cannot be read."""


class InvalidThreshold(ValueError):
    """An unknown metric or a threshold outside 0..1 (HTTP 422)."""


def load_declared_inputs(manifest: Path) -> dict[ModelIdentity, DeclaredInputs]:
    """What each model card declares, from the model manifest (``{}`` when the file is missing)."""
    if not manifest.is_file():
        return {}
    return declared_by_model(json.loads(manifest.read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert written in a transaction, counted once that commits."""

    model: ModelIdentity
    metric: str
    value: float


class MonitoringMetrics:
    """The Prometheus series of monitoring, registered once on the service's registry."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.alerts = Counter(
            "radcds_worklist_model_alerts",
            "Model monitoring alerts raised (a monitored rate crossed its threshold), by model, version and metric",
            ["model", "version", "metric"],
            registry=metrics.registry,
        )
        self.rates = Gauge(
            "radcds_worklist_model_rate",
            "Monitored rate of a model version over the last N studies, by metric",
            ["model", "version", "metric"],
            registry=metrics.registry,
        )


class MonitoringDesk:
    """Per-model monitoring over the worklist's database.

    ``acquisitions`` reads instance attributes from imaging; ``declared`` is what each model card declares
    (:func:`load_declared_inputs`); an alert needs at least ``min_studies`` studies in the last ``window_studies``,
    and a metric alerts at most once per window (not again while the window still holds studies seen before it).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        acquisitions: AcquisitionReader,
        metrics: ServiceMetrics,
        declared: Mapping[ModelIdentity, DeclaredInputs],
        default_thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS,
        window_studies: int = 50,
        min_studies: int = 10,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_commit: Callable[[], None] = lambda: None,
        finding_id: Callable[[str, str, str], str] = analysis_finding_id,
    ) -> None:
        if window_studies < 1 or min_studies < 1:
            raise ValueError("window_studies and min_studies are at least 1")
        self._engine = engine
        self._acquisitions = acquisitions
        self._metrics = MonitoringMetrics(metrics)
        self._declared = dict(declared)
        self._defaults = {Metric(k): float(v) for k, v in default_thresholds.items()}
        self._window = window_studies
        self._min = min_studies
        self._clock = clock
        self._after_commit = after_commit
        self._finding_id = finding_id

    # ---- input profiles ---------------------------------------------------------------------------------------

    def handle(self, event: DecodedEvent) -> None:
        """Kafka entry point: each FINDINGS_PRODUCED event profiles its analysis; other events are ignored."""
        if event.kind is FINDINGS_PRODUCED:
            self.record_profile(event.payload)

    def record_profile(self, payload: dict[str, object]) -> str:
        """Profile one analysis (idempotent per finding id) and check the model's thresholds; returns the finding
        id. When imaging cannot be read the profile keeps what the event carries and the DICOM fields stay empty."""
        analysis = ImagingFindingsProduced.from_payload(dict(payload)).analysis
        inst, ctx = analysis.instance, analysis.context
        try:
            acquisition = self._acquisitions.acquisition(
                inst.study_instance_uid, inst.series_instance_uid, inst.sop_instance_uid
            )
        except Exception as exc:
            log.warning(
                "instance attributes unavailable for monitoring (%s); profile kept without them", type(exc).__name__
            )
            acquisition = Acquisition(patient_birth_date=ctx.patient_birth_date, study_date=ctx.study_date)
        if not acquisition.patient_birth_date or not acquisition.study_date:
            acquisition = Acquisition(
                manufacturer=acquisition.manufacturer,
                manufacturer_model=acquisition.manufacturer_model,
                kvp=acquisition.kvp,
                slice_thickness_mm=acquisition.slice_thickness_mm,
                patient_age=acquisition.patient_age,
                patient_birth_date=acquisition.patient_birth_date or ctx.patient_birth_date,
                study_date=acquisition.study_date or ctx.study_date,
            )
        finding_id = self._finding_id(inst.study_instance_uid, inst.series_instance_uid, analysis.model.name)
        profile = input_profile(
            finding_id=finding_id,
            study_uid=inst.study_instance_uid,
            acquisition=acquisition,
            not_analysed_reason=analysis.not_analysed_reason,
            recorded_at=self._clock(),
        )
        with self._engine.begin() as conn:
            MonitoringRepository(conn).upsert_profile(profile, analysis.model)
            alerts = self.evaluate(conn, analysis.model)
        self.committed(alerts)
        return finding_id

    # ---- thresholds and alerts -------------------------------------------------------------------------------

    def thresholds(self, model_name: str) -> dict[Metric, float]:
        """The thresholds in force for a model: the defaults, overridden by what an admin set."""
        with self._engine.connect() as conn:
            return self._thresholds(MonitoringRepository(conn), model_name)

    def _thresholds(self, repo: MonitoringRepository, model_name: str) -> dict[Metric, float]:
        merged = dict(self._defaults)
        for metric, value in repo.thresholds(model_name).items():
            if metric in Metric._value2member_map_:
                merged[Metric(metric)] = value
        return merged

    def set_threshold(self, *, model: str, metric: str, value: float, user: User) -> None:
        """An admin sets the threshold of one metric for a model (every version); raises ``Forbidden`` otherwise."""
        user.require_admin()
        if metric not in Metric._value2member_map_:
            raise InvalidThreshold(f"unknown metric {metric!r}")
        if not 0.0 <= value <= 1.0:
            raise InvalidThreshold("a threshold is a rate between 0 and 1")
        if not model or len(model) > 64:
            raise InvalidThreshold("a model name has 1 to 64 characters")
        with self._engine.begin() as conn:
            MonitoringRepository(conn).set_threshold(
                model_name=model, metric=metric, threshold=value, user_id=user.id, at=self._clock()
            )

    def evaluate(self, conn: Connection, model: ModelIdentity) -> list[RaisedAlert]:
        """In the caller's transaction: compare the model version's last-N-studies rates with the thresholds and
        raise an alert for each metric above its own that was not already raised in the current window."""
        repo = MonitoringRepository(conn)
        window = recent_window(
            repo.feedback(model), repo.profiles(model), self._declared.get(model), window_studies=self._window
        )
        values = window.metrics()
        for metric, value in values.items():
            self._metrics.rates.labels(model.name, model.version, metric.value).set(value)
        if window.studies < self._min or window.started_at is None:
            return []
        raised: list[RaisedAlert] = []
        now = self._clock()
        for metric, value, threshold in crossed(values, self._thresholds(repo, model.name)):
            if repo.alerted_since(model, metric.value, window.started_at):
                continue
            alert_id = str(
                uuid.uuid5(ALERT_NAMESPACE, f"{model.name}|{model.version}|{metric.value}|{now.isoformat()}")
            )
            repo.add_alert(
                {
                    "alert_id": alert_id,
                    "model_name": model.name,
                    "model_version": model.version,
                    "metric": metric.value,
                    "value": value,
                    "threshold": threshold,
                    "raised_at": now,
                }
            )
            event = ModelAlertRaised(
                alert_id=alert_id,
                model=model,
                metric=metric.value,
                value=value,
                threshold=threshold,
                window_studies=window.studies,
                raised_at=now.isoformat(),
            )
            enqueue(conn, MODEL_ALERT_RAISED, [(event.to_payload(), alert_id, model.name)])
            append_live(
                conn,
                "alert",
                None,
                {
                    "alertId": alert_id,
                    "model": model.name,
                    "modelVersion": model.version,
                    "metric": metric.value,
                    "value": value,
                    "threshold": threshold,
                },
            )
            raised.append(RaisedAlert(model, metric.value, value))
        return raised

    def committed(self, alerts: list[RaisedAlert]) -> None:
        """After the transaction that wrote ``alerts`` committed: count them and wake the outbox."""
        for alert in alerts:
            self._metrics.alerts.labels(alert.model.name, alert.model.version, alert.metric).inc()
        self._after_commit()

    # ---- the monitoring page -------------------------------------------------------------------------------------

    def models(self) -> list[ModelIdentity]:
        """The model versions with something to show."""
        with self._engine.connect() as conn:
            return MonitoringRepository(conn).models()

    def model_monitoring(self, model: ModelIdentity) -> ModelMonitoring:
        """One model version over time: the last N studies and each day."""
        with self._engine.connect() as conn:
            repo = MonitoringRepository(conn)
            return monitor(
                model,
                repo.feedback(model),
                repo.profiles(model),
                self._declared.get(model),
                window_studies=self._window,
            )

    def alerts(self, model: ModelIdentity) -> list[dict[str, object]]:
        """The model version's latest alerts, newest first (alert_id, metric, value, threshold, raised_at)."""
        with self._engine.connect() as conn:
            return list(MonitoringRepository(conn).alerts(model))
