"""Reading DICOM Part 10 files (PS3.10 section 7) into the fields radcds needs."""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import pydicom
from pydicom.dataelem import RawDataElement
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
    #: The parsed data set, so callers need not read the file a second time.
    dataset: pydicom.Dataset


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _check_complete(ds: pydicom.Dataset, *, consumed: int, size: int, caught: list[warnings.WarningMessage]) -> None:
    """A truncated file reads "successfully" in pydicom: the last value is short, an undefined-length
    sequence has no delimiter, or reading stops before the end. Refuse all three (PS3.10 7.1)."""
    if any("End of file" in str(w.message) for w in caught):
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, "truncated DICOM file: a sequence delimiter is missing")
    if consumed != size:
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, f"truncated or trailing data: read {consumed} of {size} bytes")
    for tag, elem in ds._dict.items():
        if (
            isinstance(elem, RawDataElement)
            and elem.length != 0xFFFFFFFF
            and elem.value is not None
            and len(elem.value) != elem.length
        ):
            raise DicomRejected(
                FAILURE_CANNOT_UNDERSTAND,
                f"truncated DICOM file: element {tag} has {len(elem.value)} of {elem.length} bytes",
            )


def _check_identity(ds: pydicom.Dataset) -> tuple[str, str]:
    """SOP Class and SOP Instance UID of the data set, which must be present and agree with the File Meta.

    SOP Common (PS3.3 C.12.1) makes both Type 1 in the data set; PS3.10 7.1 makes Media Storage SOP
    Class/Instance UID (0002,0002)/(0002,0003) copies of them. The File Meta is never used in their
    place: an instance without its own SOP Instance UID fails 0xA900 (Data Set does not match SOP
    Class), one whose UIDs disagree with its File Meta fails 0xA900 (class) or 0xC000 (instance:
    which instance it is cannot be understood). The failure names the UIDs known, data set first.
    """
    meta = ds.file_meta
    sop_class, sop_instance = _text(ds, "SOPClassUID"), _text(ds, "SOPInstanceUID")
    meta_class = str(getattr(meta, "MediaStorageSOPClassUID", "") or "").strip()
    meta_instance = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "").strip()
    known_class, known_instance = sop_class or meta_class, sop_instance or meta_instance
    missing = [name for name, v in (("SOPClassUID", sop_class), ("SOPInstanceUID", sop_instance)) if not v]
    if missing:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"missing required attribute(s) in the data set: {', '.join(missing)}",
            sop_class_uid=known_class,
            sop_instance_uid=known_instance,
        )
    if meta_class and meta_class != sop_class:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "SOPClassUID differs from the File Meta's MediaStorageSOPClassUID",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    if meta_instance and meta_instance != sop_instance:
        raise DicomRejected(
            FAILURE_CANNOT_UNDERSTAND,
            "SOPInstanceUID differs from the File Meta's MediaStorageSOPInstanceUID",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    return sop_class, sop_instance


def read_part10(data: bytes, *, supported_transfer_syntaxes: frozenset[str] | None = None) -> ParsedInstance:
    """Parse a Part 10 file's header and check the identifying attributes are present.

    Raises :class:`DicomRejected` with 0xC000 for non-DICOM or truncated data, 0xA900 when a
    required UID is missing (SOP Class/Instance UID from the data set, never the File Meta), 0xA900 or
    0xC000 when they disagree with the File Meta (:func:`_check_identity`), and 0xC122 for a transfer
    syntax outside ``supported_transfer_syntaxes``.
    """
    try:
        stream = io.BytesIO(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(stream, force=False)
        _check_complete(ds, consumed=stream.tell(), size=len(data), caught=caught)
    except DicomRejected:
        raise
    except InvalidDicomError as exc:
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, f"not a DICOM Part 10 file: {exc}") from exc
    except Exception as exc:  # pydicom raises many types for truncated/corrupt data
        raise DicomRejected(FAILURE_CANNOT_UNDERSTAND, f"unreadable DICOM data: {type(exc).__name__}") from exc
    meta = ds.file_meta
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    sop_class, sop_instance = _check_identity(ds)
    study = _text(ds, "StudyInstanceUID")
    series = _text(ds, "SeriesInstanceUID")
    missing = [name for name, v in (("StudyInstanceUID", study), ("SeriesInstanceUID", series)) if not v]
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
            patient_name=_text(ds, "PatientName").split("=")[0][:324],
            patient_sex=_text(ds, "PatientSex").upper() if _text(ds, "PatientSex").upper() in {"M", "F", "O"} else "",
            patient_birth_date=_text(ds, "PatientBirthDate")
            if re.fullmatch(r"[0-9]{8}", _text(ds, "PatientBirthDate"))
            else "",
        ),
        transfer_syntax_uid=transfer_syntax,
        dataset=ds,
    )
