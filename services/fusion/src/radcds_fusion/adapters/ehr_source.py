"""The clinical-context port of fusion's use cases, over the EHR: the patient found by the identifier fusion knows
(the DICOM Patient ID, i.e. the MRN: ``GET Patient?identifier=[system|]value``), then their context read by
:class:`~radcds_fusion.adapters.ehr.EhrContextReader` on an event-loop thread, within its budget. Every failure
degrades to a context that names what was missing; nothing raises to the use case. The context carries the EHR
Patient id found, which fusion records on its recommendations (a CDS Hooks order names the patient by it)."""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import replace

from radcds.runtime.loop import LoopThread
from radcds_fusion.adapters.ehr import EhrContextReader, EhrReadError, HttpFhirReader
from radcds_fusion.domain.context import ClinicalContext, PatientRef

log = logging.getLogger(__name__)


class EhrContextSource:
    """``source(patient) -> ClinicalContext``, synchronous for the consumer thread."""

    def __init__(
        self,
        *,
        reader: EhrContextReader,
        fhir: HttpFhirReader,
        loop: LoopThread,
        identifier_system: str | None,
        timeout_s: float,
    ) -> None:
        self._reader = reader
        self._fhir = fhir
        self._loop = loop
        self._system = identifier_system
        self._timeout = timeout_s

    def __call__(self, patient: PatientRef) -> ClinicalContext:
        """The patient's context (chest region priors) with the EHR Patient id it was read for; what could not be
        read is named in ``missing``."""
        try:
            return self._loop.run(self._context(patient), timeout_s=self._timeout)
        except concurrent.futures.TimeoutError:
            log.warning("EHR context not read: over the %g s budget", self._timeout)
            return ClinicalContext(missing=(f"EHR context (over the {self._timeout:g} s budget)",))

    async def _context(self, patient: PatientRef) -> ClinicalContext:
        if not patient.identifier:
            return ClinicalContext(missing=("Patient (no identifier to look up in the EHR)",))
        value = f"{self._system}|{patient.identifier}" if self._system else patient.identifier
        try:
            matches = await self._fhir.search("Patient", {"identifier": value})
        except EhrReadError as exc:
            # the reason names the failure (timed out, unreachable, HTTP status), never the patient
            log.warning("EHR source Patient (lookup by identifier) not read: %s", exc.reason)
            return ClinicalContext(missing=(f"Patient ({exc.reason})",))
        ids = [str(m["id"]) for m in matches if m.get("resourceType") == "Patient" and m.get("id")]
        if len(ids) != 1:
            reason = "not found in the EHR by identifier" if not ids else "several EHR patients match the identifier"
            return ClinicalContext(missing=(f"Patient ({reason})",))
        context = await self._reader.context(ids[0])
        return replace(context, ehr_patient_id=ids[0])  # the patient is known even when some sources failed

    def close(self) -> None:
        """Close the HTTP client and stop the loop."""
        try:
            self._loop.run(self._fhir.aclose(), timeout_s=5.0)
        finally:
            self._loop.stop()
