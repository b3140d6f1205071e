"""The log scan itself (log_scan.py), on log lines written here: it finds each kind of leak and names no value."""

from __future__ import annotations

import json
from pathlib import Path

from .log_scan import fixture_phi, scan


def _log(tmp_path: Path, *messages: str) -> Path:
    path = tmp_path / "reporting.log"
    path.write_text("".join(json.dumps({"level": "INFO", "message": m}) + "\n" for m in messages))
    return path


def test_a_clean_log_has_no_findings(tmp_path: Path) -> None:
    log = _log(tmp_path, "report stored", "ORU queued for destination engine (control id 123)", "patient_ref hashed")
    assert scan([log]) == []


def test_a_fixture_name_birth_date_mrn_and_a_jwt_are_each_found_without_their_value(tmp_path: Path) -> None:
    token = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2VocmV4YW1wbGUifQ.c2lnbmF0dXJl"
    log = _log(tmp_path, "patient Hale", "born 1962-03-14", "mrn MRN-ehr-young", f"auth {token}", "PID DOE^JANE")
    findings = scan([log])
    assert [(f.line, f.kind) for f in findings] == [
        (1, "patient family name"),
        (2, "birth date"),
        (3, "MRN"),
        (4, "compact JWS (a token)"),
        (5, "HL7 patient name"),
    ]
    assert all("Hale" not in repr(f) and token not in repr(f) for f in findings)


def test_a_fixture_name_inside_a_longer_word_is_not_a_finding(tmp_path: Path) -> None:
    assert scan([_log(tmp_path, "Halestablished", "dr-adam", "Lindqvist")]) == []


def test_every_ehr_test_patient_is_in_the_scanned_phi() -> None:
    phi = fixture_phi()
    assert {"Hale", "Moreau", "Okafor", "Lind", "MRN-ehr-smoker-copd", "1997-06-02"} <= set(phi)
