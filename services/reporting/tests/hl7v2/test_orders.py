"""ORM^O01 and OMI^O23 parsing into PlacedImagingOrder, with errors that name the field (ERR-2)."""

from __future__ import annotations

import pytest

from radcds_reporting.adapters.hl7v2.ack import AckCode, ErrorCode, HL7MessageError
from radcds_reporting.adapters.hl7v2.orders import parse_order_message
from radcds_reporting.domain.orders import OrderControl

from .conftest import OMI_O23_NEW, ORM_O01_CANCEL, ORM_O01_NEW


def test_orm_new_order_maps_ids_accession_and_study_uid() -> None:
    order = parse_order_message(ORM_O01_NEW).order
    assert order.control is OrderControl.NEW
    assert (order.placer_order_number, order.filler_order_number) is not None
    assert order.placer_order_number is not None and order.placer_order_number.number == "PLC123"
    assert order.filler_order_number is not None and order.filler_order_number.namespace == "RIS"
    assert (order.accession_number, order.requested_procedure_id, order.scheduled_procedure_step_id) == (
        "ACC789",
        "RP001",
        "SPS001",
    )
    assert order.study_instance_uid == "1.2.840.113619.2.55.3.1234"
    assert order.modality == "CR"
    assert order.procedure_code is not None and order.procedure_code.code == "71046"
    assert order.reason == "Shortness of breath"
    assert order.patient.value == "123456" and order.patient.issuer == "HOSP"
    assert order.patient_name is not None and order.patient_name.family == "DOE"
    assert order.scheduled_at is not None and order.scheduled_at.hour == 11


def test_orm_keeps_unknown_and_trailing_z_segments_verbatim() -> None:
    parsed = parse_order_message(ORM_O01_NEW)
    assert parsed.z_segments == ("ZDS|1.2.840.113619.2.55.3.1234^100^Application^DICOM", "ZXY|site-specific|value")
    assert "PV1|1|O" in parsed.other_segments


def test_omi_reads_ipc_including_station_ae_title() -> None:
    order = parse_order_message(OMI_O23_NEW).order
    assert order.accession_number == "ACC900"
    assert order.requested_procedure_id == "RP900"
    assert order.study_instance_uid == "1.2.826.0.1.3680043.8.498.1"
    assert order.scheduled_procedure_step_id == "SPS900"
    assert order.modality == "CT"
    assert order.scheduled_station_ae_title == "CTSCANNER01"
    assert order.scheduled_at is not None and order.scheduled_at.utcoffset() is not None


def test_orm_cancel_without_obr_is_accepted() -> None:
    order = parse_order_message(ORM_O01_CANCEL).order
    assert order.control is OrderControl.CANCEL


def test_order_with_lf_segment_separators_is_accepted() -> None:
    assert parse_order_message(ORM_O01_NEW.replace("\r", "\n")).order.accession_number == "ACC789"


def _error(text: str) -> HL7MessageError:
    with pytest.raises(HL7MessageError) as info:
        parse_order_message(text)
    return info.value


def test_unknown_order_control_raises_table_value_error_at_orc1() -> None:
    error = _error(ORM_O01_NEW.replace("ORC|NW|", "ORC|XX|"))
    assert error.code is ErrorCode.TABLE_VALUE_NOT_FOUND
    assert error.location is not None and error.location.label == "ORC-1"
    assert error.ack_code is AckCode.AE


def test_missing_patient_id_raises_required_field_at_pid3() -> None:
    error = _error(ORM_O01_NEW.replace("PID|1||123456^^^HOSP^MR|", "PID|1|||"))
    assert error.code is ErrorCode.REQUIRED_FIELD_MISSING
    assert error.location is not None and error.location.label == "PID-3.1"


def test_bad_study_uid_in_ipc_raises_data_type_error_at_ipc3() -> None:
    error = _error(OMI_O23_NEW.replace("1.2.826.0.1.3680043.8.498.1", "1.2.826.01.x"))
    assert error.code is ErrorCode.DATA_TYPE_ERROR
    assert error.location is not None and error.location.label == "IPC-3"


def test_new_order_without_procedure_raises_at_obr4() -> None:
    error = _error(ORM_O01_NEW.replace("71046^XR CHEST 2 VIEWS^CPT4", ""))
    assert error.location is not None and error.location.label == "OBR-4"


def test_omi_without_ipc_raises_segment_sequence_error() -> None:
    text = "\r".join(s for s in OMI_O23_NEW.split("\r") if not s.startswith("IPC"))
    error = _error(text)
    assert error.code is ErrorCode.SEGMENT_SEQUENCE_ERROR and error.location is not None
    assert error.location.segment == "IPC"


def test_bad_timestamp_raises_data_type_error_at_orc9() -> None:
    error = _error(ORM_O01_NEW.replace("||20260101100000|||1234", "||2026-01-01|||1234"))
    assert error.code is ErrorCode.DATA_TYPE_ERROR
    assert error.location is not None and error.location.label == "ORC-9"


def test_unsupported_message_type_raises_ar() -> None:
    error = _error(ORM_O01_NEW.replace("ORM^O01", "ADT^A01"))
    assert error.ack_code is AckCode.AR and error.code is ErrorCode.UNSUPPORTED_MESSAGE_TYPE
