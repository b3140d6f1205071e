"""A new chest CT compared with the prior the EHR holds, through the whole stack (issue #11).

Real: Apache Kafka, PostgreSQL, the services, HAPI FHIR JPA 8.8.0 as the EHR (fhir/ehr_patients.py: a 64-year-old
current smoker with COPD whose chest CT of 180 days ago showed a 6 mm solid nodule of the right upper lobe), the
ORU receiver (a python-hl7 MLLP server). The stack's fusion reads the EHR through a loopback gateway of this module
(conftest.EHR_GATEWAY_PORT) that forwards to HAPI, and that the last tests slow past fusion's read timeout and then
stop.

1. An ORM^O01 orders the chest CT (MLLP to reporting); another product's TID 1500 measurement SR of that study
   (highdicom) measures the nodule at 8 mm and is stored into imaging (STOW-RS).
2. fusion fetches the SR (WADO-RS), reads the patient's context from HAPI and assesses: "increased", a volume
   doubling time, a Fleischner 2017 recommendation with a due date.
3. reporting fills the report's comparison and recommendation sections: in the DiagnosticReport, its HTML
   presented form and the ORU^R01 the integration engine receives (OBX 18834-2 and 18783-1).
4. With the EHR slowed past the timeout, and then stopped, the assessment still comes, names what was missing, and
   the report goes out with it.

Run: flock /tmp/radcds-it.lock .venv/bin/python -m pytest tests/integration/test_fusion_report_flow.py
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import hl7
import httpx
import pytest
from pydicom.uid import generate_uid
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from radcds.adapters.fhir.report import diagnostic_report_id
from radcds.domain.events import ASSESSMENT_PRODUCED
from radcds_devstack.demo import event_trail, stow
from radcds_devstack.samples import chest_ct, nodule_measurement_sr, part10
from radcds_devstack.testing import html_section, presented_html
from radcds_reporting.adapters.hl7v2.ack import AckCode

from .conftest import EHR_GATEWAY_PORT, EHR_READ_TIMEOUT_S
from .helpers import eventually
from .peers import Hapi, IntegrationEngine, forward, mllp_send, orm_o01, patients, serve

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.fhir_server]

SCREENING_UNKNOWN = "whether the CT is a lung cancer screening examination"
#: Longer than the stack fusion's EHR budget (conftest: RADCDS_FUSION_EHR_READ_TIMEOUT_S, twice that for the budget).
SLOW_S = 2 * EHR_READ_TIMEOUT_S + 3.0


class Gateway:
    """The EHR as the stack's fusion sees it: HAPI behind a loopback app that can be slowed and stopped."""

    def __init__(self, hapi: Hapi) -> None:
        self.delay_s = 0.0

        async def fhir(request: Request) -> Response:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return await forward(request, hapi.base)

        self._server: Iterator[str] | None = serve(
            Starlette(routes=[Route("/fhir/{path:path}", fhir)]), port=EHR_GATEWAY_PORT
        )
        next(self._server)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


@pytest.fixture(scope="module")
def gateway(hapi: Hapi) -> Iterator[Gateway]:
    g = Gateway(hapi)
    yield g
    g.stop()


def _ordered_chest_ct(stack: Any, tmp_path: Path, mrn: str, *, long_axis_mm: float, short_axis_mm: float) -> Any:
    """Order a chest CT for ``mrn`` over MLLP and store a measurement SR of that study; returns the SR."""
    n = random.randrange(10**7, 10**8)
    accession, study_uid = f"FR{n}", generate_uid()
    orm = orm_o01(
        f"FR-ORM-{n}",
        f"FRPLC{n}",
        f"FRFIL{n}",
        accession,
        study_uid,
        mrn,
        procedure="71250^CT CHEST WO CONTRAST^CPT4",
        modality="CT",
    )
    path = tmp_path / f"order-{n}.hl7"
    path.write_text(orm, encoding="ascii")
    assert [a.code for a in mllp_send(stack, path)] == [AckCode.AA]
    ct = chest_ct(patient_id=mrn, study_date=date.today().strftime("%Y%m%d"))
    ct.StudyInstanceUID = study_uid
    ct.AccessionNumber = accession
    sr = nodule_measurement_sr(ct, long_axis_mm=long_axis_mm, short_axis_mm=short_axis_mm)
    stow(stack, [part10(sr)])
    return sr


def _assessment(stack: Any, study_uid: str) -> dict[str, Any]:
    trail = event_trail(stack, study_uid, until_types={ASSESSMENT_PRODUCED.type}, timeout_s=240)
    return [e["payload"] for e in trail if e["type"] == ASSESSMENT_PRODUCED.type][-1]


def _report_with(stack: Any, study_uid: str, text: str) -> dict[str, Any]:
    """The study's DiagnosticReport once its conclusion says ``text``."""
    url = f"http://{stack.host}:{stack.ports.reporting}/fhir/DiagnosticReport/{diagnostic_report_id(study_uid)}"

    def probe() -> dict[str, Any] | None:
        r = httpx.get(url, timeout=10)
        return r.json() if r.status_code == 200 and text in r.json().get("conclusion", "") else None

    return eventually(probe, timeout_s=180, what=f"the report saying {text!r}")


def _obx(message: hl7.Message, code: str) -> list[str]:
    return [str(obx[5]) for obx in message.segments("OBX") if str(obx[3]).startswith(code + "^")]


def test_8_mm_nodule_of_a_new_chest_ct_against_the_ehr_6_mm_prior_fills_the_report_fhir_html_and_oru(
    stack: Any, gateway: Gateway, engine_peer: IntegrationEngine, tmp_path: Path
) -> None:
    mrn = f"MRN-{patients.SMOKER}"
    sr = _ordered_chest_ct(stack, tmp_path, mrn, long_axis_mm=8.4, short_axis_mm=7.6)

    assessment = _assessment(stack, sr.StudyInstanceUID)
    (comparison,) = assessment["comparisons"]
    assert comparison["change"] == "increased"
    assert comparison["priorStudyDate"] == (date.today() - timedelta(days=patients.PRIOR_CT_DAYS_BEFORE)).isoformat()
    assert comparison["intervalDays"] == patients.PRIOR_CT_DAYS_BEFORE
    vdt = round(comparison["volumeDoublingTimeDays"])
    assert vdt > 0
    (line,) = assessment["sections"]["comparison"]
    assert "previously 6.0 mm" in line and f"volume doubling time {vdt} days" in line, line
    (rec,) = assessment["recommendations"]
    assert rec["guidelineId"] == "fleischner-2017" and rec["state"] == "proposed" and rec["dueBy"] > rec["dueFrom"]
    fleischner = next(g for g in assessment["guidelines"] if g["id"] == "fleischner-2017")
    assert fleischner["applies"] is True
    # the context came from HAPI: smoking history and the prior study
    assert any("30 pack-years" in used for used in assessment["contextUsed"]), assessment["contextUsed"]
    # every EHR source answered; only what no EHR holds is missing (the order gave no screening indication)
    assert assessment["missingContext"] == [SCREENING_UNKNOWN]
    (recommendation_line,) = [r for r in assessment["sections"]["recommendations"] if r.startswith("fleischner")]

    # FHIR: the DiagnosticReport's conclusion and its HTML presented form
    report = _report_with(stack, sr.StudyInstanceUID, f"Comparison: {line}")
    assert f"Recommendation: {recommendation_line}" in report["conclusion"]
    assert report["basedOn"][0]["reference"].startswith("ServiceRequest/")
    page = presented_html(report)
    assert line in html_section(page, "comparison")
    assert recommendation_line in html_section(page, "recommendations")
    assert "Pending" not in page

    # HL7 v2: the ORU the integration engine receives carries both sections under their LOINC codes
    def oru_with_comparison() -> hl7.Message | None:
        return next((m for m in engine_peer.orus_for(sr.AccessionNumber) if _obx(m, "18834-2") == [line]), None)

    oru = eventually(oru_with_comparison, timeout_s=120, what="the ORU^R01 with the comparison")
    assert str(oru.segment("OBR")[25]) == "P"
    assert recommendation_line in _obx(oru, "18783-1")
    assert str(oru.segment("PID")[3]).startswith(mrn)


def _unknown_patient_report(stack: Any, tmp_path: Path, missing: str) -> None:
    mrn = f"MRN-{uuid.uuid4().hex[:10]}"
    sr = _ordered_chest_ct(stack, tmp_path, mrn, long_axis_mm=7.0, short_axis_mm=6.0)
    assessment = _assessment(stack, sr.StudyInstanceUID)
    # the EHR's failure first, then what the guidelines lacked because of it
    assert assessment["missingContext"][0] == missing and "patient age" in assessment["missingContext"]
    assert assessment["recommendations"], "the assessment is still made, with the guideline's assumptions"
    report = _report_with(stack, sr.StudyInstanceUID, f"Missing clinical context: {missing}")
    assert missing in html_section(presented_html(report), "missing-context")


def test_ehr_slower_than_fusion_read_timeout_still_gives_an_assessment_naming_it_and_the_report(
    stack: Any, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.delay_s = SLOW_S
    try:
        _unknown_patient_report(stack, tmp_path, "Patient (timed out)")
    finally:
        gateway.delay_s = 0.0


def test_ehr_stopped_still_gives_an_assessment_naming_it_and_the_report(
    stack: Any, gateway: Gateway, tmp_path: Path
) -> None:
    gateway.stop()
    _unknown_patient_report(stack, tmp_path, "Patient (EHR unreachable)")
