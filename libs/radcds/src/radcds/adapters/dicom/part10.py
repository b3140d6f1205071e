"""Reading DICOM Part 10 files (PS3.10 section 7) into the fields radcds needs."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom.errors import InvalidDicomError

from radcds.domain.findings import InstanceReference, StudyContext

#: Failure reasons of PS3.18 section 10.5.3 (STOW-RS) / PS3.4 Annex B (C-STORE).
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


class DicomRejected(ValueError):
    """A part that cannot be stored, with the DICOM failure reason to return."""

    def __init__(self, reason: int, message: str, *, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    """What imaging keeps about one received instance."""

    instance: InstanceReference
    context: StudyContext
    transfer_syntax_uid: str


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def read_part10(data: bytes, *, supported_transfer_syntaxes: frozenset[str] | None = None) -> ParsedInstance:
    """Parse a Part 10 file's header and check the identifying attributes are present.

    Raises :class:`DicomRejected` with 0xC000 for non-DICOM or truncated data, 0xA900 when a
    required UID is missing, and 0xC122 for a transfer syntax outside ``supported_transfer_syntaxes``.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
        # Touch the last element so a truncated file fails here and not later.
        _ = ds.get("PixelData") if "PixelData" in ds else None
    except InvalidDicomError as exc:
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, f"not a DICOM Part 10 file: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for truncated/corrupt data
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from exc
    meta = ds.file_meta
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    sop_class = _text(ds, "SOPClassUID") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    sop_instance = _text(ds, "SOPInstanceUID") or str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "")
    study = _text(ds, "StudyInstanceUID")
    series = _text(ds, "SeriesInstanceUID")
    missing = [
        name
        for name, v in (
            ("SOPClassUID", sop_class),
            ("SOPInstanceUID", sop_instance),
            ("StudyInstanceUID", study),
            ("SeriesInstanceUID", series),
        )
        if not v
    ]
    if missing:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"missing required attribute(s): {', '.join(missing)}",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    if not transfer_syntax:
        raise DicomRejected(
            FAILURE_CANNOT_UNDERSTAND,
            "file meta has no TransferSyntaxUID",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    if supported_transfer_syntaxes is not None and transfer_syntax not in supported_transfer_syntaxes:
        raise DicomRejected(
            FAILURE_TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"transfer syntax {transfer_syntax} is not accepted",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    return ParsedInstance(
        instance=InstanceReference(study, series, sop_instance, sop_class),
        context=StudyContext(
            patient_id=_text(ds, "PatientID"),
            issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
            accession_number=_text(ds, "AccessionNumber"),
            modality=_text(ds, "Modality"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            study_description=_text(ds, "StudyDescription"),
        ),
        transfer_syntax_uid=transfer_syntax,
    )
