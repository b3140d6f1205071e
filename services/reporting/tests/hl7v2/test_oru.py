"""ORU^R01 generation: parses in python-hl7 and validates in hl7apy at VALIDATION_LEVEL.STRICT."""

from __future__ import annotations

from datetime import datetime

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_field, parse_message

from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.domain.results import ReportSection, ReportSectionKind, ResultStatus

from .conftest import make_result

HEADER = MessageHeader(sending_facility="HOSP", receiving_application="RIS", receiving_facility="HOSP")


def _build(now: datetime, layout: TextLayout = TextLayout.OBX_PER_LINE, **changes: object) -> str:
    status = changes.pop("status", ResultStatus.PRELIMINARY)
    result = make_result(status, **changes)  # type: ignore[arg-type]
    return build_oru_r01(result, header=HEADER, control_id="MSG00001", created_at=now, layout=layout)


def strict_validate(text: str) -> Message:
    """Validate an ORU^R01 with hl7apy at VALIDATION_LEVEL.STRICT, typing each OBX-5 by its OBX-2.

    ``parse_message(..., validation_level=STRICT, find_groups=True)`` builds the ORU_R01 groups
    (PATIENT_RESULT / ORDER_OBSERVATION / OBSERVATION), refuses unknown elements and checks each
    value's data type and length; ``validate()`` then checks cardinality and required fields
    against the v2.5.1 message structure. hl7apy reads OBX-5 ("varies") as ST, whose 199-character
    limit a TX line or an FT report exceeds, whatever OBX-2 says. So each OBX-5 is first parsed
    on its own at STRICT level as the type OBX-2 declares (TX, FT, NM, CE; each repetition
    separately), and the message is then parsed with OBX-5 replaced by a short placeholder.
    """
    segments = text.split("\r")
    for i, segment in enumerate(segments):
        if segment.startswith("OBX|"):
            fields = segment.split("|")
            value_type = fields[2]
            for repetition in fields[5].split("~"):
                parse_field(
                    repetition,
                    name="OBX_5",
                    version="2.5.1",
                    validation_level=VALIDATION_LEVEL.STRICT,
                    reference=("leaf", None, value_type, "OBSERVATION_VALUE", None, -1),
                )
            fields[5] = "0" if value_type == "NM" else "placeholder"
            segments[i] = "|".join(fields)
    message = parse_message("\r".join(segments), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() is True
    return message


@pytest.mark.parametrize("layout", list(TextLayout))
def test_oru_in_each_layout_validates_in_hl7apy_strict(layout: TextLayout, now: datetime) -> None:
    message = strict_validate(_build(now, layout))
    assert message.version == "2.5.1"
    assert message.name == "ORU_R01"


def test_oru_with_long_report_lines_validates_in_hl7apy_strict(now: datetime) -> None:
    long_line = "Findings " + "and more findings " * 30
    for layout in TextLayout:
        sections = (ReportSection(ReportSectionKind.FINDINGS, (long_line, long_line)),)
        strict_validate(_build(now, layout, sections=sections))


def test_hl7apy_strict_rejects_a_non_numeric_nm_value(now: datetime) -> None:
    text = _build(now).replace(
        "|NM|x-ctr^Cardiothoracic ratio^LN|m1|0.58|", "|NM|x-ctr^Cardiothoracic ratio^LN|m1|abc|"
    )
    with pytest.raises(Exception, match="abc"):
        strict_validate(text)


def test_oru_strict_validation_catches_a_missing_required_field(now: datetime) -> None:
    broken = _build(now).replace("|MSG00001|", "||")
    with pytest.raises(Exception, match="MSH_10"):
        parse_message(broken, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_oru_parses_in_python_hl7_with_order_fields(now: datetime) -> None:
    message = hl7.parse(_build(now))
    msh, obr, orc = message.segment("MSH"), message.segment("OBR"), message.segment("ORC")
    assert str(msh[9]) == "ORU^R01^ORU_R01" and str(msh[10]) == "MSG00001" and str(msh[12]) == "2.5.1"
    assert str(orc[2]) == "PLC123^EPIC" and str(obr[2]) == "PLC123^EPIC"
    assert str(orc[3]) == "FIL456^RIS" and str(obr[3]) == "FIL456^RIS"
    assert str(obr[18]) == "ACC789"
    assert str(obr[22]) == "20260101120000+0100"
    assert str(obr[24]) == "RAD"
    assert str(obr[25]) == "P"
    assert str(obr[32]) == "5678&RADIOLOGIST&RAY"


@pytest.mark.parametrize(
    ("status", "letter"), [(ResultStatus.FINAL, "F"), (ResultStatus.CORRECTED, "C"), (ResultStatus.CANCELLED, "X")]
)
def test_oru_status_sets_obr25_and_every_obx11(status: ResultStatus, letter: str, now: datetime) -> None:
    message = hl7.parse(_build(now, status=status))
    assert str(message.segment("OBR")[25]) == letter
    assert {str(obx[11]) for obx in message.segments("OBX")} == {letter}


def test_oru_measurements_are_nm_obx_with_ucum_units(now: datetime) -> None:
    message = hl7.parse(_build(now))
    numeric = [obx for obx in message.segments("OBX") if str(obx[2]) == "NM"]
    assert [(str(o[5]), str(o[6])) for o in numeric] == [
        ("0.58", "{ratio}^{ratio}^UCUM"),
        ("0.0000001", "mm^mm^UCUM"),
    ]


def test_oru_conclusion_is_a_coded_snomed_obx(now: datetime) -> None:
    message = hl7.parse(_build(now))
    coded = [obx for obx in message.segments("OBX") if str(obx[2]) == "CE"]
    assert [str(o[5]) for o in coded] == ["8186001^Cardiomegaly^SCT"]


def test_oru_obx_per_line_writes_one_escaped_tx_obx_per_line(now: datetime) -> None:
    message = hl7.parse(_build(now, TextLayout.OBX_PER_LINE))
    text = [obx for obx in message.segments("OBX") if str(obx[2]) == "TX"]
    assert len(text) == 4
    assert [str(o[4]) for o in text] == ["1.1", "1.2", "2.1", "3.1"]
    first = message.unescape(str(text[0][5]))
    assert first == "Cardiothoracic ratio 0.58 | upper limit ^ 0.50 & rising ~ see \\ prior"


def test_oru_repeating_obx5_writes_one_obx_per_section_with_repetitions(now: datetime) -> None:
    raw = _build(now, TextLayout.REPEATING_OBX5)
    findings = next(s for s in raw.split("\r") if s.startswith("OBX|1|"))
    values = findings.split("|")[5].split("~")
    assert len(values) == 2 and values[1] == "Lungs clear."


def test_oru_formatted_text_writes_one_ft_obx_with_br(now: datetime) -> None:
    raw = _build(now, TextLayout.FORMATTED_TEXT)
    ft = [s for s in raw.split("\r") if s.split("|")[2:3] == ["FT"]]
    assert len(ft) == 1
    assert "FINDINGS:\\.br\\Cardiothoracic ratio" in ft[0]
    assert "\\.br\\IMPRESSION:\\.br\\Cardiomegaly." in ft[0]


def test_oru_without_patient_class_has_no_pv1(now: datetime) -> None:
    assert "\rPV1|" not in _build(now, patient_class="")


def test_oru_with_too_long_control_id_raises(now: datetime) -> None:
    with pytest.raises(ValueError, match="MSH-10"):
        build_oru_r01(make_result(), header=HEADER, control_id="X" * 21, created_at=now)


def test_oru_for_a_patient_without_a_name_has_pid5_name_type_u_and_validates_in_hl7apy_strict(now: datetime) -> None:
    # PID-5 is required in v2.5.1; with no known name only XPN.7 name type U "unspecified" is sent.
    text = _build(now, patient_name=None)
    assert str(hl7.parse(text).segment("PID")[5]) == "^^^^^^U"
    strict_validate(text)


def test_oru_pid_carries_id_with_assigning_authority_name_birth_date_and_sex(now: datetime) -> None:
    pid = hl7.parse(_build(now)).segment("PID")
    assert [str(pid[3]), str(pid[5]), str(pid[7]), str(pid[8])] == [
        "123456^^^HOSP^MR",
        "DOE^JANE^^^^^L",
        "19700101",
        "F",
    ]
