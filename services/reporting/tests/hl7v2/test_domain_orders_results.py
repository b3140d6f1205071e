"""Validating constructors of the pure order and result types."""

from __future__ import annotations

from datetime import datetime

import pytest

from radcds.domain.codes import Coding
from radcds_reporting.domain.orders import (
    InvalidOrderError,
    OrderControl,
    OrderNumber,
    PatientIdentifier,
    PersonName,
    PlacedImagingOrder,
)
from radcds_reporting.domain.results import NumericResult, ReportSection, ReportSectionKind, ResultStatus

from .conftest import make_result

PROC = Coding("http://www.ama-assn.org/go/cpt", "71046", "XR CHEST 2 VIEWS")


def _order(**changes: object) -> PlacedImagingOrder:
    values: dict[str, object] = {
        "control": OrderControl.NEW,
        "patient": PatientIdentifier("123", "HOSP"),
        "placer_order_number": OrderNumber("PLC1"),
        "procedure_code": PROC,
    }
    values.update(changes)
    return PlacedImagingOrder(**values)  # type: ignore[arg-type]


def test_order_without_placer_or_filler_raises_naming_placer_number() -> None:
    with pytest.raises(InvalidOrderError) as info:
        _order(placer_order_number=None)
    assert info.value.attribute == "placer_order_number"


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"study_instance_uid": "1.2.03"}, "study_instance_uid"),
        ({"study_instance_uid": "abc"}, "study_instance_uid"),
        ({"accession_number": "A" * 17}, "accession_number"),
        ({"modality": "c t"}, "modality"),
        ({"scheduled_station_ae_title": "AE\\X"}, "scheduled_station_ae_title"),
        ({"procedure_code": None}, "procedure_code"),
        ({"ordered_at": datetime(2026, 1, 1)}, "ordered_at"),
    ],
)
def test_order_with_malformed_attribute_raises_naming_it(changes: dict[str, object], attribute: str) -> None:
    with pytest.raises(InvalidOrderError) as info:
        _order(**changes)
    assert info.value.attribute == attribute


def test_cancel_order_without_procedure_is_valid() -> None:
    order = _order(control=OrderControl.CANCEL, procedure_code=None)
    assert order.control is OrderControl.CANCEL


def test_order_repr_and_log_fields_never_contain_the_patient_name_or_id() -> None:
    order = _order(patient_name=PersonName("DOE", "JANE"), patient=PatientIdentifier("MRN-777", "HOSP"))
    assert "DOE" not in repr(order)
    fields = order.log_fields()
    assert "DOE" not in str(fields) and "MRN-777" not in str(fields) and "PLC1" not in str(fields)


@pytest.mark.parametrize(
    ("status", "letter"),
    [
        (ResultStatus.PRELIMINARY, "P"),
        (ResultStatus.FINAL, "F"),
        (ResultStatus.CORRECTED, "C"),
        (ResultStatus.CANCELLED, "X"),
    ],
)
def test_result_status_maps_to_obr25_and_back(status: ResultStatus, letter: str) -> None:
    assert status.obr25 == letter
    assert ResultStatus.from_obr25(letter) is status


def test_result_status_from_unknown_obr25_raises() -> None:
    with pytest.raises(ValueError, match="OBR-25"):
        ResultStatus.from_obr25("R")


def test_result_without_content_raises() -> None:
    with pytest.raises(ValueError, match="must carry"):
        make_result(sections=(), measurements=(), conclusion=None)


def test_cancelled_result_without_content_is_valid() -> None:
    assert make_result(ResultStatus.CANCELLED, sections=(), measurements=(), conclusion=None).status.obr25 == "X"


def test_report_line_with_line_break_raises() -> None:
    with pytest.raises(ValueError, match="line break"):
        ReportSection(ReportSectionKind.FINDINGS, ("a\nb",))


def test_measurement_that_is_not_finite_raises() -> None:
    with pytest.raises(ValueError, match="finite"):
        NumericResult(PROC, float("inf"), "mm")


def test_result_with_naive_time_raises() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        make_result(observation_time=datetime(2026, 1, 1))
