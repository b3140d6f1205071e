"""LOINC codes of radiology reports (LOINC/RSNA Radiology Playbook), chosen per study.

US Core DiagnosticReport for Report and Note exchange binds ``code`` to LOINC report codes; a
study-specific Playbook code is preferred, and 18748-4 "Diagnostic imaging study" is the
fallback when the modality and body part do not name one we know.
"""

from __future__ import annotations

from radcds.domain.codes import LOINC, REPORT_DIAGNOSTIC_IMAGING_STUDY, Coding

CT_HEAD = Coding(LOINC, "24725-4", "CT Head")
CT_CHEST = Coding(LOINC, "24627-2", "CT Chest")
MR_BRAIN = Coding(LOINC, "24590-2", "MR Brain")

#: Body Part Examined (DICOM PS3.16 Annex L, CID 4031 code meanings) grouped by region.
_REGIONS = {
    "HEAD": "HEAD",
    "BRAIN": "HEAD",
    "SKULL": "HEAD",
    "CHEST": "CHEST",
    "THORAX": "CHEST",
    "LUNG": "CHEST",
}
_BY_MODALITY_REGION = {
    ("CT", "HEAD"): CT_HEAD,
    ("CT", "CHEST"): CT_CHEST,
    ("MR", "HEAD"): MR_BRAIN,
}


def body_region(text: str) -> str:
    """The region (HEAD, CHEST) a Body Part Examined value or study description names, or ""."""
    words = text.upper().replace("^", " ").replace("_", " ").split()
    for word in words:
        if word in _REGIONS:
            return _REGIONS[word]
    return ""


def report_code(modalities: list[str], body_parts: list[str]) -> Coding:
    """The LOINC report code for a study of ``modalities`` showing ``body_parts`` (else 18748-4)."""
    regions = {r for r in (body_region(b) for b in body_parts) if r}
    found = {_BY_MODALITY_REGION[(m, r)] for m in modalities for r in regions if (m, r) in _BY_MODALITY_REGION}
    if len(found) == 1:
        return found.pop()
    return REPORT_DIAGNOSTIC_IMAGING_STUDY
