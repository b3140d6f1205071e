"""Every coding system identifier radcds sends is in HL7 table 0396 (HL7 v2.5.1 2.A.8 CE.3/CE.6).

The table is ``radcds_reporting/adapters/hl7v2/tables/hl7-table-0396.json`` (HL7 UTG CodeSystem v2-0396,
provenance in the file). The HAPI harness checks the same on HAPI's parse of every layout
(tests/conformance/test_hl7v2_hapi.py); this is the Python-only check that runs in unit tests.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from radcds.domain.codes import Coding
from radcds_reporting.adapters.hl7v2.datatypes import (
    CODING_SYSTEMS,
    LOCAL_CODING_SYSTEM,
    RECEIVED_SYSTEM_PREFIX,
    ce,
    received_coding_system,
    v2_coding_system,
)
from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout, build_oru_r01
from radcds_reporting.adapters.hl7v2.tables import table_0396
from radcds_reporting.domain.results import ResultStatus

from .conftest import make_result

HEADER = MessageHeader(sending_facility="HOSP", receiving_application="RIS", receiving_facility="HOSP")
CPT = "http://www.ama-assn.org/go/cpt"
#: CE/CWE fields of an ORU^R01 radcds writes: OBR-4, OBX-3, OBX-6, and OBX-5 when OBX-2 is CE/CWE.
_CODED = {"OBR": (4,), "OBX": (3, 6)}


def coded_field_systems(text: str) -> list[tuple[str, str]]:
    """(location, coding system) for CE.3 and CE.6 of every coded field of an ER7 ORU."""
    out = []
    for segment in text.split("\r"):
        fields = segment.split("|")
        positions = list(_CODED.get(fields[0], ()))
        if fields[0] == "OBX" and len(fields) > 2 and fields[2] in ("CE", "CWE"):
            positions.append(5)
        for pos in positions:
            if len(fields) <= pos or not fields[pos]:
                continue
            for rep in fields[pos].split("~"):
                parts = rep.split("^") + [""] * 6
                for component in (3, 6):
                    if parts[component - 1] or parts[component - 3]:
                        out.append((f"{fields[0]}-{pos}.{component}", parts[component - 1]))
    return out


def not_in_table_0396(text: str) -> list[tuple[str, str]]:
    """Coded fields whose coding system is empty or not in table 0396."""
    table = table_0396()
    return [(where, name) for where, name in coded_field_systems(text) if name not in table]


def test_table_0396_data_carries_its_provenance_and_known_entries() -> None:
    table = table_0396()
    assert table.provenance["code_system"] == "http://terminology.hl7.org/CodeSystem/v2-0396"
    assert "HL7/UTG" in table.provenance["source"] and len(table.provenance["commit"]) == 40
    assert {"LN", "SCT", "C4", "UCUM", "DCM"} <= table.codes.keys()
    assert "CPT4" not in table


@pytest.mark.parametrize("name", [*CODING_SYSTEMS.values(), LOCAL_CODING_SYSTEM])
def test_every_coding_system_radcds_maps_to_is_an_active_table_0396_entry(name: str) -> None:
    assert table_0396().status(name) == "active"


def test_cpt4_code_is_sent_as_c4() -> None:
    assert ce(Coding(CPT, "71046", "XR CHEST 2 VIEWS")) == "71046^XR CHEST 2 VIEWS^C4"


def test_own_local_codes_use_the_99zzz_form() -> None:
    assert v2_coding_system("https://radcds.example.org/fhir/CodeSystem/report-section") == "99RADCDS"


def test_received_cpt4_is_read_as_cpt_and_sent_back_as_c4() -> None:
    assert v2_coding_system(received_coding_system("CPT4")) == "C4"


def test_received_table_name_without_uri_round_trips_and_unknown_name_goes_out_as_99zzz() -> None:
    assert received_coding_system("I10") == f"{RECEIVED_SYSTEM_PREFIX}I10"
    assert v2_coding_system(received_coding_system("I10")) == "I10"
    assert v2_coding_system(received_coding_system("LOCALXR")) == "99LOCALXR"


@pytest.mark.parametrize("layout", list(TextLayout))
@pytest.mark.parametrize("status", [ResultStatus.PRELIMINARY, ResultStatus.FINAL, ResultStatus.CORRECTED])
def test_every_coded_field_of_every_oru_layout_is_in_table_0396(
    layout: TextLayout, status: ResultStatus, now: datetime
) -> None:
    text = build_oru_r01(make_result(status), header=HEADER, control_id="MSG00001", created_at=now, layout=layout)
    systems = coded_field_systems(text)
    assert {where for where, _ in systems} >= {"OBR-4.3", "OBX-3.3", "OBX-6.3"}
    assert not_in_table_0396(text) == []


def test_table_check_reports_an_oru_with_cpt4(now: datetime) -> None:
    # Negative control: the check must notice the identifier the integration team found.
    text = build_oru_r01(make_result(), header=HEADER, control_id="MSG00001", created_at=now)
    broken = text.replace("^C4|", "^CPT4|")
    assert ("OBR-4.3", "CPT4") in not_in_table_0396(broken)
