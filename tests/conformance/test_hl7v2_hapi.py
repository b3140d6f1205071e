"""radcds's HL7 v2.5.1 output through HAPI HL7v2 2.6.0, a validator nobody on this project wrote.

HAPI parses every ORU^R01 layout (obx-per-line, repeating-obx5, formatted-text) in every status we
send (P, F, C; with NM and CE OBX) and every ACK kind our order listener sends (AA; AE with ERR; AR
for an unsupported message type and for an unsupported version; the AR to a block without a usable
MSH; enhanced-mode CA, CE, CR) strictly as v2.5.1 (v2.5.1 model classes, unexpected segments
refused, HAPI's default validation on) and checks required segments/fields, cardinalities, lengths,
MSH-9 and every coding system against HL7 table 0396. See deploy/local/hapi-hl7v2/Hl7v2Harness.java.
Negative controls: an ORU without PID-5, an ORU with ``CPT4``, an ACK with a bare ``ACK`` in MSH-9
and a non-numeric NM value must each be reported, so a validator that stops checking is noticed.

Run: ``flock /tmp/radcds-it.lock .venv/bin/python -m pytest tests/conformance/test_hl7v2_hapi.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds.domain.codes import LOINC, SNOMED_CT, Coding
from radcds_reporting.adapters.hl7v2.ack import AckCode, parse_ack
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner
from radcds_reporting.domain.results import ImagingResult, NumericResult, ReportSection, ReportSectionKind, ResultStatus
from radcds_reporting.use_cases.hl7_orders import OrderStore

from .hl7v2_hapi_harness import HapiHl7v2, missing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.validators,
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
]

NOW = datetime(2026, 1, 2, 12, 30, tzinfo=UTC)
HEADER = MessageHeader(sending_facility="HOSP", receiving_application="RIS", receiving_facility="HOSP")
CPT = "http://www.ama-assn.org/go/cpt"
MEASUREMENT = "https://radcds.example.org/fhir/CodeSystem/image-measurement"

#: Written for this test from the OMI^O23 layout of IHE RAD TF-2 4.4 (RAD-4, v2.5.1 option):
#: a new CT head order with IPC, original acknowledgment mode. Values invented.
OMI = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102090000+0100||OMI^O23^OMI_O23|{id}|P|2.5.1{ack}",
        "PID|1||987654^^^HOSP^MR||ROE^RICHARD||19600202|M",
        "ORC|{control}|PLC-{id}^EPIC|FIL-{id}^RIS||SC||||20260102085500+0100|||5555^JONES^ANNA",
        "TQ1|1||||||20260102100000+0100",
        "OBR|1|PLC-{id}^EPIC|FIL-{id}^RIS|70450^CT HEAD WO CONTRAST^C4||||||||||||5555^JONES^ANNA||ACC-{id}",
        "IPC|ACC-{id}^RIS|RP-{id}^RIS|1.2.826.0.1.3680043.8.498.1^DICOM|SPS-{id}^RIS|{modality}|||CT1^RIS|CTSCANNER01",
    ]
)
#: An ORM^O01 v2.3.1 (IHE RAD-2 style), written for this test: its ACK keeps MSH-12 2.3.1.
ORM_231 = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101100000||ORM^O01|ORM231|P|2.3.1",
        "PID|1||123456^^^HOSP^MR||DOE^JANE||19700101|F",
        "ORC|NW|PLC231^EPIC|FIL231^RIS||SC",
        "OBR|1|PLC231^EPIC|FIL231^RIS|71046^XR CHEST 2 VIEWS^C4||||||||||||||ACC231",
    ]
)


def omi(control_id: str, *, control: str = "NW", ack: str = "", modality: str = "CT^Computed Tomography^DCM") -> str:
    """The OMI above with its own MSH-10 and keys; ``ack`` is appended after MSH-12 (MSH-13..16)."""
    return OMI.format(id=control_id, control=control, ack=ack, modality=modality)


JANE = PersonName("DOE", "JANE", "Q")


def result(status: ResultStatus, *, name: PersonName | None = JANE) -> ImagingResult:
    """A chest X-ray result with every OBX kind radcds sends (TX/FT text, NM in UCUM, CE conclusion)."""
    return ImagingResult(
        status=status,
        patient=PatientIdentifier("123456", "HOSP"),
        patient_name=name,
        patient_birth_date="19700101",
        patient_sex="F",
        procedure_code=Coding(CPT, "71046", "XR CHEST 2 VIEWS"),
        observation_time=NOW,
        status_changed_at=NOW,
        placer_order_number=OrderNumber("PLC123", "EPIC"),
        filler_order_number=OrderNumber("FIL456", "RIS"),
        accession_number="ACC789",
        sections=(
            ReportSection(ReportSectionKind.FINDINGS, ("Cardiothoracic ratio: 0.58 | limit ^ 0.50 & ~ \\", "Lungs.")),
            ReportSection(ReportSectionKind.IMPRESSION, ("Cardiomegaly.",)),
            ReportSection(ReportSectionKind.AI_DISCLAIMER, ("AI-generated, preliminary, not for diagnostic use.",)),
        ),
        measurements=(
            NumericResult(Coding(MEASUREMENT, "cardiothoracic-ratio", "Cardiothoracic ratio"), 0.58, "{ratio}"),
            NumericResult(Coding(LOINC, "8867-4", "Heart rate"), 1e-7, "/min"),
        ),
        conclusion=Coding(SNOMED_CT, "8186001", "Cardiomegaly"),
        principal_result_interpreter=Practitioner("5678", PersonName("RADIOLOGIST", "RAY")),
        ordering_provider=Practitioner("1234", PersonName("SMITH", "JOHN")),
        patient_class="O",
    )


@pytest.fixture(scope="module")
def hapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HapiHl7v2]:
    """One HAPI validator JVM for the module."""
    harness = HapiHl7v2("validate", log=tmp_path_factory.mktemp("hapi") / "hapi-hl7v2.log")
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated SQLite reporting database behind the real order store."""
    e = make_engine(sqlite_url(tmp_path_factory.mktemp("db") / "reporting.db"))
    migrate(e, chain="radcds_reporting.db")
    yield e
    e.dispose()


def listener_answers(engine: Engine, data: str | bytes) -> list[str]:
    """What our order listener (OrderInbox + the reporting service's OrderStore) answers to one block."""
    inbox = OrderInbox(OrderStore(engine=engine, log=SqlReceivedMessageLog(engine)), log=SqlReceivedMessageLog(engine))
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return [a.decode("utf-8") for a in asyncio.run(inbox.handle(raw))]


def assert_clean(report: dict[str, Any], structure: str) -> None:
    assert report["errors"] == [], report["errors"]
    assert report["structure"] == structure and report["version"] == "2.5.1"


# ---------------------------------------------------------------- ORU^R01


@pytest.mark.parametrize("layout", list(TextLayout))
@pytest.mark.parametrize("status", [ResultStatus.PRELIMINARY, ResultStatus.FINAL, ResultStatus.CORRECTED])
def test_every_oru_layout_and_status_passes_hapi_v251_validation_and_table_0396(
    hapi: HapiHl7v2, layout: TextLayout, status: ResultStatus
) -> None:
    text = build_oru_r01(result(status), header=HEADER, control_id="MSG00001", created_at=NOW, layout=layout)
    report = hapi.validate(text)

    assert_clean(report, "ORU_R01")
    assert report["msh9"] == "ORU^R01^ORU_R01"
    checked = {where for where, _ in report["coded"]}
    assert {"OBR-4.3", "OBX-3.3", "OBX-5.3", "OBX-6.3"} <= checked  # the table check saw every coded field
    assert ["OBR-4.3", "C4"] in report["coded"]


def test_oru_for_a_patient_without_a_name_passes_hapi_with_pid5_name_type_u(hapi: HapiHl7v2) -> None:
    text = build_oru_r01(result(ResultStatus.FINAL, name=None), header=HEADER, control_id="M2", created_at=NOW)
    assert "|^^^^^^U|" in text
    assert_clean(hapi.validate(text), "ORU_R01")


# ---------------------------------------------------------------- ACKs


#: Our listener's ACK kinds: (what, the message that provokes it, MSA-1 codes, MSH-12 of the ACKs).
ACK_KINDS = [
    ("AA", lambda: omi("K-AA"), [AckCode.AA], "2.5.1"),
    ("AA to v2.3.1", lambda: ORM_231, [AckCode.AA], "2.3.1"),
    ("AE with ERR (bad IPC-5)", lambda: omi("K-AE", modality="c t"), [AckCode.AE], "2.5.1"),
    ("AE 204 (cancel of unknown order)", lambda: omi("K-CA", control="CA"), [AckCode.AE], "2.5.1"),
    ("AR unsupported type", lambda: omi("K-AR1").replace("OMI^O23^OMI_O23", "ADT^A01^ADT_A01"), [AckCode.AR], "2.5.1"),
    ("AR unsupported version 2.9", lambda: omi("K-AR2").replace("|P|2.5.1", "|P|2.9"), [AckCode.AR], "2.5.1"),
    ("CA then AA", lambda: omi("K-CA1", ack="|||AL|AL"), [AckCode.CA, AckCode.AA], "2.5.1"),
    ("CE (unknown charset)", lambda: omi("K-CE", ack="|||AL|AL||KLINGON"), [AckCode.CE], "2.5.1"),
    ("CR (unsupported type)", lambda: omi("K-CR", ack="|||AL|AL").replace("OMI^O23", "ADT^A01"), [AckCode.CR], "2.5.1"),
]


@pytest.mark.parametrize(("kind", "message", "codes", "version"), ACK_KINDS, ids=[k[0] for k in ACK_KINDS])
def test_every_ack_kind_of_our_listener_passes_hapi_v251_validation(
    hapi: HapiHl7v2, engine: Engine, kind: str, message: Any, codes: list[AckCode], version: str
) -> None:
    acks = listener_answers(engine, message())

    assert [parse_ack(a).code for a in acks] == codes, kind
    for ack in acks:
        report = hapi.validate(ack)
        assert report["errors"] == [], (kind, report["errors"])
        assert report["structure"] == "ACK" and report["version"] == version
        assert report["msh9"].startswith("ACK^") and report["msh9"].endswith("^ACK")
    assert all(parse_ack(a).acknowledged_control_id for a in acks)


def test_ar_to_a_block_without_usable_msh_has_only_the_two_documented_gaps(hapi: HapiHl7v2, engine: Engine) -> None:
    # docs/hl7v2.md "ACK to a block without a usable MSH": nothing to echo in MSA-2 (no MSH-10) and no
    # trigger event for MSH-9.2. HAPI must find nothing else; MSH-9.1 and MSH-9.3 are there.
    [ack] = listener_answers(engine, b"PID|1||123456^^^HOSP^MR")
    report = hapi.validate(ack)

    assert parse_ack(ack).code is AckCode.AR
    assert report["structure"] == "ACK" and report["version"] == "2.5.1" and report["msh9"] == "ACK^^ACK"
    assert sorted(report["errors"]) == [
        "MSA-2: required field missing",
        "MSH-9.2: required component missing (2.A.47 MSG)",
    ]


# ---------------------------------------------------------------- negative controls


def test_oru_without_patient_name_fails_hapi_validation(hapi: HapiHl7v2) -> None:
    text = build_oru_r01(result(ResultStatus.FINAL), header=HEADER, control_id="N1", created_at=NOW)
    broken = text.replace("|DOE^JANE^Q^^^^L|", "||")
    assert "PID-5: required field missing" in hapi.validate(broken)["errors"]


def test_oru_with_cpt4_fails_the_table_0396_check(hapi: HapiHl7v2) -> None:
    text = build_oru_r01(result(ResultStatus.FINAL), header=HEADER, control_id="N2", created_at=NOW)
    broken = text.replace("^XR CHEST 2 VIEWS^C4|", "^XR CHEST 2 VIEWS^CPT4|")
    assert "OBR-4.3: coding system CPT4 is not in HL7 table 0396" in hapi.validate(broken)["errors"]


def test_ack_with_bare_ack_in_msh9_fails_hapi_validation(hapi: HapiHl7v2, engine: Engine) -> None:
    [ack] = listener_answers(engine, omi("N3"))
    broken = ack.replace("|ACK^O23^ACK|", "|ACK|")
    assert "MSH-9.3: required component missing (2.A.47 MSG)" in hapi.validate(broken)["errors"]


def test_oru_with_a_non_numeric_nm_value_fails_hapi_default_validation(hapi: HapiHl7v2) -> None:
    text = build_oru_r01(result(ResultStatus.FINAL), header=HEADER, control_id="N4", created_at=NOW)
    broken = text.replace("|0.58|", "|0,58|")
    errors = hapi.validate(broken)["errors"]
    assert errors and any("0,58" in e for e in errors)
