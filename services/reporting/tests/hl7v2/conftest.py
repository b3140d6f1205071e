"""Sample HL7 v2 messages and result objects for the hl7v2 unit tests.

Every sample was written for these tests from the skeletons in docs/hl7v2.md, which follow
HL7 v2.5.1 chapters 4 and 7 and IHE RAD TF-2 (RAD-4 OMI^O23 with IPC, ORM^O01 with ZDS).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from radcds.domain.codes import LOINC, SNOMED_CT, Coding
from radcds_reporting.domain.orders import OrderNumber, PatientIdentifier, PersonName, Practitioner
from radcds_reporting.domain.results import (
    ImagingResult,
    NumericResult,
    ReportSection,
    ReportSectionKind,
    ResultStatus,
)

# Written for this test: a new chest X-ray order as a v2.3.1 RIS sends it (IHE RAD-2 style ORM),
# with the Study Instance UID in ZDS-1 and a trailing site Z segment that must be kept.
ORM_O01_NEW = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101100000||ORM^O01|ORM0001|P|2.3.1",
        "PID|1||123456^^^HOSP^MR||DOE^JANE||19700101|F",
        "PV1|1|O",
        "ORC|NW|PLC123^EPIC|FIL456^RIS||SC||^^^20260101110000||20260101100000|||1234^SMITH^JOHN",
        "OBR|1|PLC123^EPIC|FIL456^RIS|71046^XR CHEST 2 VIEWS^CPT4|||||||||cough|||1234^SMITH^JOHN||"
        "ACC789|RP001|SPS001||||CR|||||||R06.02^Shortness of breath^I10",
        "ZDS|1.2.840.113619.2.55.3.1234^100^Application^DICOM",
        "ZXY|site-specific|value",
    ]
)

# Adapted from the OMI^O23 example layout of IHE RAD TF-2 4.4 (RAD-4, HL7 v2.5.1 option):
# ORC, TQ1, OBR and one IPC with accession, requested procedure id, Study Instance UID, SPS id,
# modality and scheduled station AE title (IPC-9). Values written for this test.
OMI_O23_NEW = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260102090000+0100||OMI^O23^OMI_O23|OMI0001|P|2.5.1",
        "PID|1||987654^^^HOSP^MR||ROE^RICHARD||19600202|M",
        "PV1|1|I",
        "ORC|NW|PLC900^EPIC|FIL900^RIS||SC||||20260102085500+0100|||5555^JONES^ANNA",
        "TQ1|1||||||20260102100000+0100",
        "OBR|1|PLC900^EPIC|FIL900^RIS|70450^CT HEAD WO CONTRAST^CPT4||||||||||||5555^JONES^ANNA||ACC900",
        "IPC|ACC900^RIS|RP900^RIS|1.2.826.0.1.3680043.8.498.1^DICOM|SPS900^RIS|CT^Computed Tomography^DCM|||"
        "CT1^RIS|CTSCANNER01",
        "ZXY|kept",
    ]
)

# Written for this test: a cancel (ORC-1 CA) of the ORM order above; no OBR needed.
ORM_O01_CANCEL = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101120000||ORM^O01|ORM0002|P|2.3.1",
        "PID|1||123456^^^HOSP^MR||DOE^JANE",
        "ORC|CA|PLC123^EPIC|FIL456^RIS",
    ]
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))


def make_result(status: ResultStatus = ResultStatus.PRELIMINARY, **changes: object) -> ImagingResult:
    """A chest X-ray result with text that needs escaping, two measurements and a conclusion (written for tests)."""
    values: dict[str, object] = {
        "status": status,
        "patient": PatientIdentifier("123456", "HOSP"),
        "procedure_code": Coding("http://www.ama-assn.org/go/cpt", "71046", "XR CHEST 2 VIEWS"),
        "observation_time": T0,
        "status_changed_at": T0,
        "placer_order_number": OrderNumber("PLC123", "EPIC"),
        "filler_order_number": OrderNumber("FIL456", "RIS"),
        "accession_number": "ACC789",
        "sections": (
            ReportSection(
                ReportSectionKind.FINDINGS,
                ("Cardiothoracic ratio 0.58 | upper limit ^ 0.50 & rising ~ see \\ prior", "Lungs clear."),
            ),
            ReportSection(ReportSectionKind.IMPRESSION, ("Cardiomegaly.",)),
            ReportSection(ReportSectionKind.AI_DISCLAIMER, ("AI-generated preliminary report (radcds).",)),
        ),
        "measurements": (
            NumericResult(Coding(LOINC, "x-ctr", "Cardiothoracic ratio"), 0.58, "{ratio}"),
            NumericResult(Coding(LOINC, "x-tiny", "Tiny value"), 1e-7, "mm"),
        ),
        "conclusion": Coding(SNOMED_CT, "8186001", "Cardiomegaly"),
        "principal_result_interpreter": Practitioner("5678", PersonName("RADIOLOGIST", "RAY")),
        "ordering_provider": Practitioner("1234", PersonName("SMITH", "JOHN")),
        "patient_name": PersonName("DOE", "JANE"),
        "patient_birth_date": "19700101",
        "patient_sex": "F",
        "patient_class": "O",
    }
    values.update(changes)
    return ImagingResult(**values)  # type: ignore[arg-type]


@pytest.fixture
def now() -> datetime:
    """A fixed creation time for generated messages."""
    return datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
