"""Per-model monitoring: the pure rates (decisions, agreement with the signed report, the validated envelope, input
drift against the model card), input profiles from FINDINGS_PRODUCED events, thresholds an admin sets, and alerts
raised once per window as a row, an event, a live change and a Prometheus counter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, insert, select

from radcds.adapters.db.engine import migrate
from radcds.adapters.db.tables import event_outbox
from radcds.adapters.kafka.codec import DecodedEvent
from radcds.domain import codes
from radcds.domain.events import FINDINGS_PRODUCED, MODEL_ALERT_RAISED, ImagingFindingsProduced
from radcds.domain.findings import ImageAnalysis, InstanceReference, Measurement, ModelIdentity, StudyContext
from radcds.runtime.metrics import ServiceMetrics
from radcds_worklist.adapters.db.live import live_since
from radcds_worklist.db.tables import input_profiles, model_alerts
from radcds_worklist.domain.access import Forbidden, Role, User
from radcds_worklist.domain.monitoring import (
    Acquisition,
    Attribute,
    DeclaredInputs,
    FeedbackRecord,
    InputProfile,
    Metric,
    Range,
    decision_stats,
    declared_by_model,
    drift,
    monitor,
    patient_age_years,
    recent_window,
)
from radcds_worklist.domain.worklist import finding_id as analysis_finding_id
from radcds_worklist.use_cases.monitoring import InvalidThreshold, MonitoringDesk, load_declared_inputs

ROOT = Path(__file__).resolve().parents[3]
MODEL = ModelIdentity("head_ct_hyperdensity", "1")
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ADMIN = User("issuer|root", "Admin", frozenset({Role.ADMIN}), "")
ADA = User("issuer|ada", "Dr Ada", frozenset({Role.RADIOLOGIST}), "Practitioner/dr-ada")


def _fb(finding, study, action, *, code="", reason="", at=T0, signed=False) -> FeedbackRecord:
    return FeedbackRecord(finding, study, code, action, reason, at, signed)


def _profile(study, *, reason="", at=T0, **fields) -> InputProfile:
    return InputProfile(f"f-{study}", study, at, outside_envelope_reason=reason, **fields)


# ---- pure -----------------------------------------------------------------------------------------------------


def test_each_finding_counts_once_with_its_items_latest_decision_and_a_rejected_item_rejects_it():
    stats, agreement = decision_stats(
        [
            _fb("f1", "s1", "rejected", code="a", reason="false-positive", at=T0),
            _fb("f1", "s1", "accepted", code="a", at=T0 + timedelta(minutes=1)),  # changed mind: accepted
            _fb("f2", "s2", "accepted", code="", signed=True),
            _fb("f2", "s2", "rejected", code="b", reason="wrong-location", signed=True),
            _fb("f3", "s3", "edited", signed=True),
        ]
    )
    assert (stats.findings, stats.accepted, stats.edited, stats.rejected) == (3, 1, 1, 1)
    assert stats.reasons == (("wrong-location", 1),)
    assert stats.rejection_rate == pytest.approx(1 / 3)
    assert (agreement.signed_findings, agreement.kept) == (2, 1)
    assert agreement.disagreement_rate == pytest.approx(0.5)


def test_rates_without_any_decision_are_none_and_give_no_metric():
    window = recent_window([], [], None, window_studies=5)
    assert window.decisions.rejection_rate is None and window.agreement.rate is None
    assert window.metrics() == {}


def test_patient_age_comes_from_the_age_string_else_from_birth_and_study_dates():
    assert patient_age_years("045Y") == 45.0
    assert patient_age_years("006M") == 0.5
    assert patient_age_years("", "19400305", "20040826") == 64.0
    assert patient_age_years("", "19400827", "20040826") == 63.0
    assert patient_age_years("45", "", "") is None
    assert patient_age_years("", "2004", "20040826") is None


def test_drift_counts_analysed_series_outside_the_declared_set_and_ranges_and_ignores_declined_ones():
    declared = DeclaredInputs(
        manufacturers=frozenset({"ge medical systems"}),
        kvp=Range(100, 140),
        slice_thickness_mm=Range(2.5, 5.0),
        patient_age_years=Range(18, None),
    )
    profiles = [
        _profile("s1", manufacturer="GE MEDICAL SYSTEMS", kvp=120, slice_thickness_mm=5.0, patient_age_years=45),
        _profile("s2", manufacturer="Philips", kvp=150, slice_thickness_mm=1.0, patient_age_years=12),
        _profile("s3", manufacturer="", kvp=None, slice_thickness_mm=None, patient_age_years=None),
        _profile("s4", reason="slice thickness 0.6 mm outside 2.5-5.0", manufacturer="Siemens"),
    ]
    by = {d.attribute: d for d in drift(profiles, declared)}
    assert by[Attribute.MANUFACTURER].outside_share == pytest.approx(0.5)
    assert by[Attribute.MANUFACTURER].unknown == 1
    assert by[Attribute.KVP].distribution == (("120 kV", 1), ("150 kV", 1))
    assert by[Attribute.SLICE_THICKNESS].declared == "2.5-5 mm"
    assert by[Attribute.PATIENT_AGE].distribution == (("10-19", 1), ("40-49", 1))
    assert by[Attribute.PATIENT_AGE].outside == 1
    assert by[Attribute.MANUFACTURER_MODEL].outside_share is None  # the card declares no model names


def test_outside_envelope_share_by_reason_and_the_last_n_studies_window():
    profiles = [
        _profile("s1", at=T0),
        _profile("s2", reason="not a head CT", at=T0 + timedelta(hours=1)),
        _profile("s3", reason="not a head CT", at=T0 + timedelta(hours=2)),
    ]
    window = recent_window([], profiles, None, window_studies=2)
    assert window.studies == 2 and window.started_at == T0 + timedelta(hours=1)
    assert window.envelope.share == 1.0 and window.envelope.by_reason == (("not a head CT", 2),)
    assert window.metrics()[Metric.OUTSIDE_ENVELOPE_RATE] == 1.0


def test_monitoring_over_time_has_one_bucket_per_day_oldest_first():
    feedback = [_fb("f1", "s1", "rejected", reason="false-positive", at=T0 + timedelta(days=1))]
    result = monitor(MODEL, feedback, [_profile("s1", at=T0)], None, window_studies=10)
    assert [d.label for d in result.days] == ["2026-03-01", "2026-03-02"]
    assert result.days[1].decisions.rejected == 1 and result.days[0].envelope.analyses == 1
    assert result.recent.decisions.rejection_rate == 1.0


def test_manifest_without_declared_inputs_falls_back_to_the_envelope_of_applies_to(tmp_path):
    document = json.loads((ROOT / "models" / "manifest.json").read_text(encoding="utf-8"))
    for model in document["models"]:
        model.pop("declared_inputs", None)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(document), encoding="utf-8")
    head = load_declared_inputs(manifest)[MODEL]
    assert head.source == "applies_to"
    assert head.slice_thickness_mm == Range(2.5, 5.0) and head.patient_age_years == Range(18, None)
    assert head.manufacturers == frozenset()


def test_manifest_declared_inputs_block_is_read_with_applies_to_for_what_it_leaves_out():
    manifest = {
        "models": [
            {
                "name": "chest_ctr",
                "version": "1",
                "applies_to": {"slice_thickness_mm": None, "patient_age_years": {"min": 18, "max": None}},
                "declared_inputs": {
                    "manufacturers": ["Philips Medical Systems"],
                    "manufacturer_models": [],
                    "kvp": {"min": 100, "max": 150},
                },
            }
        ]
    }
    declared = declared_by_model(manifest)[ModelIdentity("chest_ctr", "1")]
    assert declared.manufacturers == frozenset({"philips medical systems"})
    assert declared.kvp == Range(100, 150) and declared.patient_age_years == Range(18, None)
    assert declared.slice_thickness_mm is None


# ---- the desk over the database -----------------------------------------------------------------------------


class FakeAcquisitions:
    """Our own port (imaging's DICOMweb), answering from a table, or failing."""

    def __init__(self, answers: dict[str, Acquisition] | None = None, *, fail: bool = False) -> None:
        self.answers = answers or {}
        self.fail = fail

    def acquisition(self, study: str, series: str, instance: str) -> Acquisition:
        if self.fail:
            raise ConnectionError("imaging down")
        return self.answers[instance]


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(engine, chain="radcds_worklist.db")
    return engine


def _event(n: int, *, reason: str = "", birth: str = "19600101") -> DecodedEvent:
    study = f"1.2.826.0.1.3680043.8.498.{100 + n}"
    instance = InstanceReference(study, study + ".1", study + ".1.1", "1.2.840.10008.5.1.4.1.1.2")
    context = StudyContext(patient_id=f"MRN{n}", modality="CT", study_date="20260301", patient_birth_date=birth)
    measurements = () if reason else (Measurement(codes.HYPERDENSE_REGION_COUNT, 0.0, "{count}"),)
    analysis = ImageAnalysis(instance, context, MODEL, measurements=measurements, not_analysed_reason=reason)
    payload = ImagingFindingsProduced(analysis).to_payload()
    return DecodedEvent(f"e{n}", FINDINGS_PRODUCED.type, "/radcds/inference", study, None, FINDINGS_PRODUCED, payload)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _desk(engine, acquisitions, **kwargs) -> tuple[MonitoringDesk, ServiceMetrics]:
    metrics = ServiceMetrics()
    declared = {MODEL: DeclaredInputs(slice_thickness_mm=Range(2.5, 5.0), source="applies_to")}
    desk = MonitoringDesk(
        engine=engine, acquisitions=acquisitions, metrics=metrics, declared=declared, clock=Clock(), **kwargs
    )
    return desk, metrics


def _alerts_counted(metrics: ServiceMetrics, metric: str) -> float:
    value = metrics.registry.get_sample_value(
        "radcds_worklist_model_alerts_total", {"model": MODEL.name, "version": MODEL.version, "metric": metric}
    )
    return value or 0.0


def test_findings_event_profiles_the_instance_read_from_imaging_once_per_finding(engine):
    event = _event(1)
    sop = event.payload["instance"]["sopInstanceUid"]
    acquisitions = FakeAcquisitions({sop: Acquisition("GE", "Revolution", 120.0, 5.0, "045Y")})
    desk, _ = _desk(engine, acquisitions)
    desk.handle(event)
    desk.handle(event)  # redelivered
    with engine.connect() as conn:
        rows = conn.execute(select(input_profiles)).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.finding_id == analysis_finding_id(
        event.payload["instance"]["studyInstanceUid"], event.payload["instance"]["seriesInstanceUid"], MODEL.name
    )
    assert (row.manufacturer, row.manufacturer_model, row.kvp, row.slice_thickness_mm) == ("GE", "Revolution", 120, 5)
    assert row.patient_age_years == 45.0


def test_a_failing_imaging_read_keeps_the_profile_with_what_the_event_carries(engine, caplog):
    desk, _ = _desk(engine, FakeAcquisitions(fail=True))
    desk.handle(_event(2, reason="slice thickness 0.6 mm outside 2.5-5.0", birth="19600301"))
    with engine.connect() as conn:
        row = conn.execute(select(input_profiles)).one()
    assert row.manufacturer == "" and row.kvp is None
    assert row.patient_age_years == 66.0  # from the event's birth date and study date
    assert row.outside_envelope_reason.startswith("slice thickness")
    assert "ConnectionError" in caplog.text and "MRN" not in caplog.text


def test_crossing_a_threshold_raises_one_alert_per_window_with_event_live_change_and_counter(engine):
    desk, metrics = _desk(engine, FakeAcquisitions(fail=True), window_studies=10, min_studies=2)
    desk.handle(_event(1, reason="not a head CT"))  # one study: below min_studies, no alert
    assert _alerts_counted(metrics, "outside-envelope-rate") == 0
    desk.handle(_event(2, reason="not a head CT"))
    desk.handle(_event(3, reason="not a head CT"))  # still above, same window: no second alert
    with engine.connect() as conn:
        alerts = conn.execute(select(model_alerts)).all()
        events = conn.execute(select(event_outbox).where(event_outbox.c.event_type == MODEL_ALERT_RAISED.type)).all()
    assert [(a.metric, a.value, a.threshold) for a in alerts] == [("outside-envelope-rate", 1.0, 0.5)]
    (event,) = events
    payload = json.loads(event.payload)
    assert event.subject == MODEL.name and payload["windowStudies"] == 2 and payload["model"]["version"] == "1"
    assert [e.kind for e in live_since(engine, 0)] == ["alert"]
    assert _alerts_counted(metrics, "outside-envelope-rate") == 1.0
    assert desk.alerts(MODEL)[0]["metric"] == "outside-envelope-rate"


def test_an_admin_threshold_overrides_the_default_and_only_an_admin_may_set_it(engine):
    desk, _ = _desk(engine, FakeAcquisitions(fail=True), min_studies=1)
    with pytest.raises(Forbidden):
        desk.set_threshold(model=MODEL.name, metric="rejection-rate", value=0.1, user=ADA)
    with pytest.raises(InvalidThreshold):
        desk.set_threshold(model=MODEL.name, metric="happiness", value=0.1, user=ADMIN)
    with pytest.raises(InvalidThreshold):
        desk.set_threshold(model=MODEL.name, metric="rejection-rate", value=1.5, user=ADMIN)
    desk.set_threshold(model=MODEL.name, metric="outside-envelope-rate", value=1.0, user=ADMIN)
    assert desk.thresholds(MODEL.name)[Metric.OUTSIDE_ENVELOPE_RATE] == 1.0
    desk.handle(_event(1, reason="not a head CT"))  # 100 % is not above 1.0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(model_alerts)).scalar_one() == 0


def test_model_monitoring_of_the_desk_shows_the_profiled_models(engine):
    desk, _ = _desk(engine, FakeAcquisitions(fail=True))
    desk.handle(_event(1))
    assert desk.models() == [MODEL]
    result = desk.model_monitoring(MODEL)
    assert result.recent.envelope.analyses == 1 and result.declared is not None
    with engine.begin() as conn:  # a profile of another version stays apart
        conn.execute(
            insert(input_profiles).values(
                finding_id="x", study_uid="9.9", model_name=MODEL.name, model_version="2", recorded_at=T0
            )
        )
    assert desk.model_monitoring(MODEL).recent.envelope.analyses == 1
