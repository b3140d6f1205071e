"""Reading DICOM Part 10 files (PS3.10 section 7) into the fields radcds needs."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import MutableSequence
from dataclasses import dataclass

import pydicom
import pydicom.uid
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length
from pydicom.valuerep import AMBIGUOUS_VR

from radcds.domain.findings import InstanceReference, StudyContext

#: Failure reasons of PS3.18 section 10.5.3 (STOW-RS) / PS3.4 Annex B (C-STORE).
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


#: A UID as imaging keeps and announces it (PS3.5 9.1, the ``instance.stored`` event schema): dot-separated
#: components of digits, at most 64 characters. Leading zeros in a component, a fault of some older modalities,
#: are tolerated.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_UID_LENGTH = 64
#: Identifying values longer than their VR allows (PS3.5 6.2: LO 64, SH 16, CS 16) are refused, never cut:
#: a cut Patient ID or Accession Number could name another patient or order.
_IDENTIFIER_LIMITS = (("PatientID", 64), ("IssuerOfPatientID", 64), ("AccessionNumber", 16), ("Modality", 16))


def is_uid(value: str) -> bool:
    """True when ``value`` is a UID imaging can keep (:data:`_UID`, at most 64 characters)."""
    return len(value) <= MAX_UID_LENGTH and _UID.match(value) is not None


class DicomRejected(ValueError):
    """A part that cannot be stored, with the DICOM failure reason to return.

    The UIDs name the refused instance in the Failed SOP Sequence (PS3.18 Table 10.5.3-2); one that is no valid UID
    is left out, so that the answer never carries a value its VR (UI) forbids.
    """

    def __init__(self, reason: int, message: str, *, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.sop_class_uid = sop_class_uid if is_uid(sop_class_uid) else ""
        self.sop_instance_uid = sop_instance_uid if is_uid(sop_instance_uid) else ""


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


#: Elements :func:`_decode_all` leaves to ``Dataset.__getitem__``: Specific Character Set (read in the default
#: encoding) and the pixel elements (their cache is reset on assignment); private elements also go there.
_DECODED_BY_PYDICOM = frozenset({0x00080005, 0x7FE00008, 0x7FE00009, 0x7FE00010})


def _decode_all(dataset: pydicom.Dataset) -> None:
    """Convert every element of ``dataset`` and of its sequences' items (pydicom converts lazily, on first access).

    A value that cannot be read as its VR (an IS that is no number, an unknown VR, a sequence whose items are
    broken) is refused here, at ingest, with 0xC000, instead of raising in whichever reader touches it later
    (QIDO-RS indexing, WADO-RS metadata, the models): what imaging stores, it can read.

    Most elements are converted as ``Dataset.__getitem__`` converts them (``convert_raw_data_element`` with the
    data set's character set, the result put in its place), without the lookups ``__getitem__`` repeats for each
    one (a third of the ingest time of a STOW-RS request). Sequences, private elements, ambiguous VRs (US or SS,
    OB or OW), deferred values, Specific Character Set and Pixel Data take pydicom's own path.
    """
    elements = dataset._dict
    encoding: str | MutableSequence[str] | None = None
    for tag in list(elements):
        element = elements[tag]
        try:
            if (
                isinstance(element, RawDataElement)
                and tag not in _DECODED_BY_PYDICOM
                and not tag.is_private
                and (element.value is not None or element.length == 0)
            ):
                if encoding is None:
                    encoding = dataset.original_character_set or dataset._character_set
                converted = convert_raw_data_element(element, encoding=encoding, ds=dataset)
                if converted.VR != "SQ" and converted.VR not in AMBIGUOUS_VR:
                    elements[tag] = converted
                    continue
            element = dataset[tag]
        except Exception as exc:  # pydicom's converters raise many types for values that break their VR
            raise DicomRejected(
                FAILURE_CANNOT_UNDERSTAND, f"element {tag} cannot be read as its VR: {type(exc).__name__}"
            ) from exc
        if element.VR == "SQ":
            for item in element.value:
                _decode_all(item)


def _check_native_pixel_data(ds: pydicom.Dataset, transfer_syntax: str) -> str | None:
    """Why native (uncompressed) Pixel Data cannot be the image its Image Pixel Module describes, None if it can.

    PS3.5 8.1.1 / PS3.3 C.7.6.3: native Pixel Data holds Rows x Columns x Samples per Pixel x Number of Frames
    pixels of Bits Allocated each, in a value of even length (PS3.5 7.1.1). Shorter or odd-length data cannot be
    displayed nor analysed; encapsulated (compressed) data is only checked when decoded.
    """
    uid = pydicom.uid.UID(transfer_syntax)
    if "PixelData" not in ds or not uid.is_transfer_syntax or uid.is_compressed:
        return None
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated"):  # Type 1, PS3.3 C.7.6.3
        if not _is_positive_int(ds.get(keyword)):
            return f"{keyword} is not a positive number: the Image Pixel Module cannot describe the Pixel Data"
    if not str(ds.get("PhotometricInterpretation") or "").strip():  # Type 1; it sets the length of YBR_FULL_422
        return "Photometric Interpretation is missing: the Image Pixel Module cannot describe the Pixel Data"
    frames = ds.get("NumberOfFrames")
    if frames not in (None, "") and not _is_positive_int(frames):
        return "Number of Frames (PS3.3 C.7.6.6) is not a positive number"
    if ds.BitsAllocated != 1 and ds.BitsAllocated % 8:
        return "Bits Allocated of native Pixel Data is 1 or a multiple of 8 (PS3.5 8.1.1)"
    expected = get_expected_length(ds)
    actual = len(ds.PixelData or b"")  # a value of length 0 reads as None
    if actual < expected or actual % 2:
        return f"Pixel Data has {actual} bytes where the Image Pixel Module needs {expected} (of even length)"
    return None


def _check_encapsulation(ds: pydicom.Dataset, transfer_syntax: str) -> str | None:
    """Why the Pixel Data of an encapsulated transfer syntax is not encapsulated, None if it is (or is native).

    PS3.5 A.4: encapsulated Pixel Data has undefined length and is a sequence of items (the Basic Offset Table,
    then the fragments). A value of defined length under such a transfer syntax was stored, and every decode of
    it (rendering, frames, the models) then failed.
    """
    uid = pydicom.uid.UID(transfer_syntax)
    if "PixelData" not in ds or not uid.is_transfer_syntax or not uid.is_encapsulated:
        return None
    if not ds["PixelData"].is_undefined_length:
        return f"Pixel Data of encapsulated transfer syntax {transfer_syntax} has a defined length (PS3.5 A.4: items)"
    return None


def _is_positive_int(value: object) -> bool:
    """True for an integer value (US, IS) of at least 1; False for a multi-value, a text that is no number, 0."""
    if isinstance(value, str) and not isinstance(value, int):
        try:
            value = int(value)
        except ValueError:
            return False
    return isinstance(value, int) and value >= 1


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

    Raises :class:`DicomRejected` with 0xC000 for non-DICOM or truncated data and for an element that cannot be
    read as its VR (:func:`_decode_all`), 0xA900 when a required UID is missing (SOP Class/Instance UID from the
    data set, never the File Meta) or is no valid UID (:func:`is_uid`), 0xA900 or 0xC000 when they disagree with
    the File Meta (:func:`_check_identity`), 0xA900 for a Patient ID, Issuer of Patient ID, Accession Number or
    Modality longer than its VR allows or native Pixel Data that does not fit its Image Pixel Module
    (:func:`_check_native_pixel_data`), 0xC000 for Pixel Data not encapsulated under an encapsulated transfer syntax
    (:func:`_check_encapsulation`) and for a missing or invalid Transfer Syntax UID and 0xC122 for one
    outside ``supported_transfer_syntaxes``.
    """
    try:
        stream = io.BytesIO(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(stream, force=False)
            consumed = stream.tell()
            _check_complete(ds, consumed=consumed, size=len(data), caught=caught)  # on the raw elements
            _decode_all(ds.file_meta)
            _decode_all(ds)
        # Sequences read on conversion may have met the end of the data as well.
        _check_complete(ds, consumed=consumed, size=len(data), caught=caught)
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
    invalid = [
        name
        for name, v in (
            ("SOPClassUID", sop_class),
            ("SOPInstanceUID", sop_instance),
            ("StudyInstanceUID", study),
            ("SeriesInstanceUID", series),
        )
        if not is_uid(v)
    ]
    if invalid:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"not a valid UID (PS3.5 9.1: digits and dots, at most 64 characters): {', '.join(invalid)}",
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    if not transfer_syntax or not is_uid(transfer_syntax):
        raise DicomRejected(
            FAILURE_CANNOT_UNDERSTAND,
            "file meta has no valid TransferSyntaxUID",
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
    encapsulation_problem = _check_encapsulation(ds, transfer_syntax)
    if encapsulation_problem is not None:
        raise DicomRejected(
            FAILURE_CANNOT_UNDERSTAND, encapsulation_problem, sop_class_uid=sop_class, sop_instance_uid=sop_instance
        )
    pixel_problem = _check_native_pixel_data(ds, transfer_syntax)
    if pixel_problem is not None:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            pixel_problem,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
        )
    too_long = [f"{name} (at most {limit})" for name, limit in _IDENTIFIER_LIMITS if len(_text(ds, name)) > limit]
    if too_long:
        raise DicomRejected(
            FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"value longer than its VR allows (PS3.5 6.2): {', '.join(too_long)}",
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
            # Descriptive values: a malformed date is dropped, an over-long time or description cut (PS3.5 6.2:
            # DA is YYYYMMDD, TM at most 16 characters, LO 64).
            study_date=_text(ds, "StudyDate") if re.fullmatch(r"[0-9]{8}", _text(ds, "StudyDate")) else "",
            study_time=_text(ds, "StudyTime")[:16],
            study_description=_text(ds, "StudyDescription")[:64],
            patient_name=_text(ds, "PatientName").split("=")[0][:324],
            patient_sex=_text(ds, "PatientSex").upper() if _text(ds, "PatientSex").upper() in {"M", "F", "O"} else "",
            patient_birth_date=_text(ds, "PatientBirthDate")
            if re.fullmatch(r"[0-9]{8}", _text(ds, "PatientBirthDate"))
            else "",
        ),
        transfer_syntax_uid=transfer_syntax,
        dataset=ds,
    )
