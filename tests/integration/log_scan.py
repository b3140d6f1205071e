"""The scan of every service log a test session wrote: no PHI of the test fixtures and no token or secret.

Run by the session ``stack`` fixture before its run folder is removed (conftest.py). What counts as PHI is what
the fixtures put in: the EHR test patients' names, birth dates and MRNs (tests/integration/fhir/ehr_patients.py),
the HL7 v2 test patient (DOE^JANE, born 19700101), the Orthanc peer's patient name, and the DICOM samples'
PatientName values. Tokens: compact JWS (``eyJ…``) and ``Bearer`` credentials, the development S3 secret key.
A finding names the file, the line number and the kind, never the matched text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack.stack import S3_DEV_CREDENTIALS

#: The EHR test patients' source (read as text: tests/integration/fhir is not a package).
EHR_PATIENTS = Path(__file__).parent / "fhir" / "ehr_patients.py"

_PATIENT_CALL = re.compile(r'_patient\(\w+, "([^"]+)", "([^"]+)", "\w+", "([\d-]+)"\)')
_PATIENT_ID = re.compile(r'^[A-Z]+ = "(ehr-[a-z-]+)"$', re.M)


def fixture_phi() -> dict[str, str]:
    """Value -> kind for every identifying value the fixtures send in."""
    phi: dict[str, str] = {}
    source = EHR_PATIENTS.read_text()
    for family, given, birth in _PATIENT_CALL.findall(source):
        phi[family] = "patient family name"
        phi[given] = "patient given name"
        phi[birth] = "birth date"
    for pid in _PATIENT_ID.findall(source):
        phi[f"MRN-{pid}"] = "MRN"
    phi["DOE^JANE"] = "HL7 patient name"
    phi["19700101"] = "HL7 birth date"
    phi["Peer^Orthanc"] = "DICOM patient name"
    return phi


TOKEN_PATTERNS = {
    "compact JWS (a token)": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "Bearer credential": re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{16,}"),
}


@dataclass(frozen=True)
class Finding:
    """One leak: where, and what kind (never the value)."""

    file: str
    line: int
    kind: str


def scan(logs: Iterable[Path], phi: dict[str, str] | None = None) -> list[Finding]:
    """Findings in ``logs`` (each a text file, JSON lines or not)."""
    phi = fixture_phi() if phi is None else phi
    words = {value: re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])") for value in phi}
    secrets = {S3_DEV_CREDENTIALS[1]: "S3 secret key"}
    findings: list[Finding] = []
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for value, pattern in words.items():
                if pattern.search(line):
                    findings.append(Finding(path.name, number, phi[value]))
            for kind, pattern in TOKEN_PATTERNS.items():
                if pattern.search(line):
                    findings.append(Finding(path.name, number, kind))
            for value, kind in secrets.items():
                if value in line:
                    findings.append(Finding(path.name, number, kind))
    return findings
