"""Pure reporting rules: report status life cycle, LOINC report codes, orders, event compatibility,
FHIR date ranges of search values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from radcds.adapters.kafka.codec import validate_payload
from radcds.domain import codes
from radcds.domain.codes import Coding
from radcds.domain.events import (
    FINDINGS_PRODUCED,
    REPORT_STORED,
    DiagnosticReportStored,
    ImagingFindingsProduced,
)
from radcds_reporting.adapters.fhir.search import SearchError, date_range
from radcds_reporting.domain.orders import OrderControl
from radcds_reporting.domain.report_codes import report_code
from radcds_reporting.domain.report_status import (
    AuthorRequired,
    IllegalTransition,
    ReportStatus,
    next_status,
    require_author,
)
from radcds_reporting.domain.service_request import OrderDetails

S = ReportStatus


@pytest.mark.parametrize(
    ("current", "requested", "changed", "expected"),
    [
        (S.PRELIMINARY, S.FINAL, False, S.FINAL),
        (S.PRELIMINARY, S.PRELIMINARY, True, S.PRELIMINARY),
        (S.FINAL, S.FINAL, True, S.AMENDED),
        (S.FINAL, S.FINAL, False, S.FINAL),
        (S.FINAL, S.CORRECTED, True, S.CORRECTED),
        (S.AMENDED, S.FINAL, True, S.AMENDED),
        (S.FINAL, S.ENTERED_IN_ERROR, False, S.ENTERED_IN_ERROR),
    ],
)
def test_allowed_status_change_gives_the_stored_status(current, requested, changed, expected):
    assert next_status(current, requested, content_changed=changed) is expected


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        (S.FINAL, S.PRELIMINARY),
        (S.PRELIMINARY, S.AMENDED),
        (S.PRELIMINARY, S.CORRECTED),
        (S.ENTERED_IN_ERROR, S.FINAL),
        (S.FINAL, S.CANCELLED),
    ],
)
def test_illegal_status_change_raises(current, requested):
    with pytest.raises(IllegalTransition):
        next_status(current, requested, content_changed=True)


def test_signed_status_without_practitioner_raises_author_required():
    with pytest.raises(AuthorRequired):
        require_author(S.FINAL, "")
    with pytest.raises(AuthorRequired):
        require_author(S.AMENDED, "Patient/1")
    require_author(S.FINAL, "Practitioner/7")
    require_author(S.PRELIMINARY, "")


@pytest.mark.parametrize(
    ("modalities", "parts", "code"),
    [
        (["CT"], ["HEAD"], "24725-4"),
        (["CT"], ["CT HEAD WO CONTRAST"], "24725-4"),
        (["CT"], ["Chest"], "24627-2"),
        (["MR"], ["BRAIN"], "24590-2"),
        (["CR"], ["CHEST"], "18748-4"),
        (["CT"], [""], "18748-4"),
        (["CT"], ["HEAD", "CHEST"], "18748-4"),
    ],
)
def test_report_code_is_the_playbook_code_when_known_else_18748_4(modalities, parts, code):
    assert report_code(modalities, parts).code == code


def test_order_needs_a_key_and_cancel_maps_to_revoked():
    with pytest.raises(ValueError, match="placer"):
        OrderDetails(patient_id="P")
    assert OrderDetails(patient_id="P", accession_number="A", control=OrderControl.CANCEL).status == "revoked"
    assert OrderDetails(patient_id="P", placer_order_number="1").status == "active"


def test_report_stored_payload_of_the_first_version_still_decodes_and_validates():
    old = {"diagnosticReportId": "abc-1", "studyInstanceUid": "1.2.3", "status": "preliminary", "observationIds": []}
    validate_payload(REPORT_STORED, old)
    event = DiagnosticReportStored.from_payload(old)
    assert event.critical is False and event.communication_ids == ()
    assert event.to_payload() == old


def test_critical_flag_round_trips_and_is_omitted_when_false():
    payload = {
        "instance": {
            "studyInstanceUid": "1.2.3",
            "seriesInstanceUid": "1.2.3.4",
            "sopInstanceUid": "1.2.3.4.5",
            "sopClassUid": "1.2.840.10008.5.1.4.1.1.2",
        },
        "context": {"patientId": "P"},
        "model": {"name": "m", "version": "1"},
        "measurements": [
            {"system": codes.SNOMED_CT, "code": "1386000", "display": "Intracranial hemorrhage", "value": 0.9,
             "unit": "1", "critical": True},
            {"system": codes.UCUM, "code": "x", "display": "x", "value": 1.0, "unit": "1"},
        ],
    }  # fmt: skip
    validate_payload(FINDINGS_PRODUCED, payload)
    analysis = ImagingFindingsProduced.from_payload(payload).analysis
    assert [m.critical for m in analysis.measurements] == [True, False]
    again = ImagingFindingsProduced(analysis).to_payload()
    assert again["measurements"][0]["critical"] is True and "critical" not in again["measurements"][1]
    assert Coding(codes.SNOMED_CT, "1386000", "Intracranial hemorrhage") == analysis.measurements[0].code


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-02", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-01-02T10:15:00+01:00", datetime(2026, 1, 2, 9, 15, tzinfo=UTC),
         datetime(2026, 1, 2, 9, 15, 0, 999999, tzinfo=UTC)),
        ("2026-01-02T10:15:00.250Z", datetime(2026, 1, 2, 10, 15, 0, 250000, tzinfo=UTC),
         datetime(2026, 1, 2, 10, 15, 0, 250000, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_date_value_stands_for_its_implicit_range(text, low, high):
    assert date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["26-01-01", "2026-1-2", "2026-02-30", "yesterday"])
def test_malformed_date_raises_search_error(text):
    with pytest.raises(SearchError):
        date_range(text)
