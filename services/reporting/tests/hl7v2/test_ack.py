"""ACK building (original and enhanced mode) and lenient ACK parsing."""

from __future__ import annotations

from datetime import datetime

import pytest

from radcds_reporting.adapters.hl7v2.ack import (
    AckCode,
    ErrorCode,
    ErrorLocation,
    HL7MessageError,
    ProcessingOutcome,
    acknowledgments,
    parse_ack,
    parse_msh,
)

from .conftest import OMI_O23_NEW, ORM_O01_NEW

CONTENT_ERROR = HL7MessageError(ErrorCode.REQUIRED_FIELD_MISSING, "missing", location=ErrorLocation("PID", 3, 1))


def _segments(ack: str) -> dict[str, list[str]]:
    return {s[:3]: s.split("|") for s in ack.split("\r")}


def test_original_mode_aa_swaps_apps_keeps_version_and_echoes_control_id(now: datetime) -> None:
    header = parse_msh(ORM_O01_NEW)
    [ack] = acknowledgments(header, ProcessingOutcome.success(), new_control_id="ACK1", created_at=now)
    seg = _segments(ack)
    assert seg["MSH"][2:6] == ["RADCDS", "HOSP", "RIS", "HOSP"]
    assert seg["MSH"][8] == "ACK^O01^ACK" and seg["MSH"][9] == "ACK1" and seg["MSH"][11] == "2.3.1"
    assert seg["MSA"][1:3] == ["AA", "ORM0001"]
    assert "ERR" not in seg


def test_ae_for_v251_has_err_with_location_and_table_0357_code(now: datetime) -> None:
    header = parse_msh(OMI_O23_NEW)
    [ack] = acknowledgments(header, ProcessingOutcome.failed(CONTENT_ERROR), new_control_id="A2", created_at=now)
    err = _segments(ack)["ERR"]
    assert err[2] == "PID^1^3^1^1"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"


def test_ae_for_v231_uses_the_older_err1_form(now: datetime) -> None:
    header = parse_msh(ORM_O01_NEW)
    [ack] = acknowledgments(header, ProcessingOutcome.failed(CONTENT_ERROR), new_control_id="A3", created_at=now)
    assert _segments(ack)["ERR"][1] == "PID^1^3^101&Required field missing&HL70357"


def test_enhanced_mode_al_al_sends_commit_then_application_ack(now: datetime) -> None:
    header = parse_msh(OMI_O23_NEW.replace("|P|2.5.1", "|P|2.5.1|||AL|AL"))
    acks = acknowledgments(header, ProcessingOutcome.success(), new_control_id="E1", created_at=now)
    assert [parse_ack(a).code for a in acks] == [AckCode.CA, AckCode.AA]
    assert {_segments(a)["MSH"][9] for a in acks} == {"E1C", "E1A"}


def test_enhanced_mode_application_ack_er_sends_only_commit_on_success(now: datetime) -> None:
    header = parse_msh(OMI_O23_NEW.replace("|P|2.5.1", "|P|2.5.1|||AL|ER"))
    acks = acknowledgments(header, ProcessingOutcome.success(), new_control_id="E2", created_at=now)
    assert [parse_ack(a).code for a in acks] == [AckCode.CA]


def test_enhanced_mode_refused_message_gets_commit_reject_only(now: datetime) -> None:
    header = parse_msh(OMI_O23_NEW.replace("|P|2.5.1", "|P|2.5.1|||AL|AL"))
    refused = HL7MessageError(ErrorCode.UNSUPPORTED_VERSION_ID, "version", ack_code=AckCode.AR)
    acks = acknowledgments(header, ProcessingOutcome.refused(refused), new_control_id="E3", created_at=now)
    assert [parse_ack(a).code for a in acks] == [AckCode.CR]


def test_enhanced_mode_ne_ne_sends_nothing(now: datetime) -> None:
    header = parse_msh(OMI_O23_NEW.replace("|P|2.5.1", "|P|2.5.1|||NE|NE"))
    assert acknowledgments(header, ProcessingOutcome.success(), new_control_id="E4", created_at=now) == []


def test_parse_msh_of_text_without_msh_raises_ar() -> None:
    with pytest.raises(HL7MessageError) as info:
        parse_msh("PID|1||123")
    assert info.value.ack_code is AckCode.AR


def test_parse_ack_tolerates_simple_hl7_bare_ack_and_version_23() -> None:
    # Shape of the ACK npm simple-hl7 3.3.0 sends (observed from its server): MSH-9 "ACK", MSH-12 "2.3".
    ack = parse_ack("MSH|^~\\&|||||20260101120000||ACK|ID1|P|2.3\rMSA|AA|MSG00001")
    assert ack.code is AckCode.AA and ack.acknowledged_control_id == "MSG00001"


def test_parse_ack_with_lf_separators_and_err_reads_error_code() -> None:
    ack = parse_ack(
        "MSH|^~\\&|A|B|C|D|2026||ACK^R01^ACK|9|P|2.5.1\nMSA|AE|M1|bad\nERR||OBX^1^5|102^Data type error^HL70357|E"
    )
    assert (ack.code, ack.error_code, ack.error_location, ack.text) == (AckCode.AE, "102", "OBX^1^5", "bad")


def test_parse_ack_without_msa_raises() -> None:
    with pytest.raises(ValueError, match="MSA"):
        parse_ack("MSH|^~\\&|A|B|C|D|2026||ACK|9|P|2.5.1")
