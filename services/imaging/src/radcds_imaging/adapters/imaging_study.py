"""FHIR R4 ImagingStudy from the DICOM headers of a study's instances.

Follows the R4 DICOM mapping (https://hl7.org/fhir/R4/imagingstudy-mappings.html):

- ``identifier``: Study Instance UID (0020,000D) as ``urn:dicom:uid`` / ``urn:oid:<uid>``, and
  Accession Number (0008,0050) typed ``v2-0203#ACSN``.
- ``started``: Study Date + Study Time (0008,0020)+(0008,0030), with Timezone Offset From UTC
  (0008,0201) when the instance carries one.
- ``modality``: the union of the series' Modality (0008,0060) as DCM codes (PS3.16 CID 29).
- ``description`` / ``procedureCode`` / ``referrer``: (0008,1030) / (0008,1032) / (0008,0090).
- ``series``: (0020,000E), (0020,0011), (0008,0060), (0008,103E), Body Part Examined (0018,0015)
  mapped to SNOMED CT (:data:`BODY_PART_SNOMED`), Laterality (0020,0060), (0008,0021)+(0008,0031).
- ``series.instance``: (0008,0018), (0008,0016) as ``urn:ietf:rfc:3986`` ``urn:oid:<uid>``, (0020,0013).
- ``endpoint``: a contained DICOMweb WADO-RS Endpoint (``dicom-wado-rs``).

The result is validated with ``fhir.resources.R4B`` (structure only).

The input is one mapping per instance, keyed like the ``dicom_instances`` and
``dicom_instance_attributes`` columns; :func:`instance_attributes` builds one from a pydicom header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pydicom

from radcds.adapters.fhir.report import imaging_study_id
from radcds.adapters.fhir.resources import validate_resource
from radcds.domain import codes
from radcds.domain.codes import Coding

#: FHIR R4 identifier system of URIs (sopClass), terminologies-systems.html.
URI_SYSTEM = "urn:ietf:rfc:3986"
ENDPOINT_CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
#: Id of the contained WADO-RS Endpoint, referenced as ``#wado``.
ENDPOINT_ID = "wado"

#: Body Part Examined (0018,0015) defined terms to SNOMED CT, after PS3.16 Annex L
#: ("Correspondence of Anatomic Region Codes and Body Part Examined Defined Terms").
#: Only codes checked against that table; other values leave ``series.bodySite`` out.
BODY_PART_SNOMED: dict[str, Coding] = {
    "ABDOMEN": Coding(codes.SNOMED_CT, "113345001", "Abdomen"),
    "ANKLE": Coding(codes.SNOMED_CT, "344001", "Ankle"),
    "BRAIN": Coding(codes.SNOMED_CT, "12738006", "Brain"),
    "BREAST": Coding(codes.SNOMED_CT, "76752008", "Breast"),
    "CHEST": Coding(codes.SNOMED_CT, "51185008", "Chest"),
    "CSPINE": Coding(codes.SNOMED_CT, "122494005", "Cervical spine"),
    "EXTREMITY": Coding(codes.SNOMED_CT, "66019005", "Extremity"),
    "FOOT": Coding(codes.SNOMED_CT, "56459004", "Foot"),
    "HAND": Coding(codes.SNOMED_CT, "85562004", "Hand"),
    "HEAD": Coding(codes.SNOMED_CT, "69536005", "Head"),
    "HEART": Coding(codes.SNOMED_CT, "80891009", "Heart"),
    "KNEE": Coding(codes.SNOMED_CT, "72696002", "Knee"),
    "LSPINE": Coding(codes.SNOMED_CT, "122496007", "Lumbar spine"),
    "LUNG": Coding(codes.SNOMED_CT, "39607008", "Lung"),
    "NECK": Coding(codes.SNOMED_CT, "45048000", "Neck"),
    "PELVIS": Coding(codes.SNOMED_CT, "12921003", "Pelvis"),
    "SHOULDER": Coding(codes.SNOMED_CT, "16982005", "Shoulder"),
    "SKULL": Coding(codes.SNOMED_CT, "89546000", "Skull"),
    "TSPINE": Coding(codes.SNOMED_CT, "122495006", "Thoracic spine"),
}

#: Laterality (0020,0060) to SNOMED CT (PS3.16 CID 244). "B" and "U" are not mapped.
LATERALITY_SNOMED: dict[str, Coding] = {
    "R": Coding(codes.SNOMED_CT, "24028007", "Right"),
    "L": Coding(codes.SNOMED_CT, "7771000", "Left"),
}

#: Code meanings of common Modality (0008,0060) values (PS3.16 CID 29 / CID 33).
MODALITY_DISPLAY: dict[str, str] = {
    "CR": "Computed Radiography",
    "CT": "Computed Tomography",
    "DX": "Digital Radiography",
    "MG": "Mammography",
    "MR": "Magnetic Resonance",
    "NM": "Nuclear Medicine",
    "OT": "Other",
    "PT": "Positron emission tomography",
    "RF": "Radio Fluoroscopy",
    "SEG": "Segmentation",
    "SR": "SR Document",
    "US": "Ultrasound",
    "XA": "X-Ray Angiography",
}

#: Coding Scheme Designators (0008,0102) with a FHIR system (PS3.16 section 8, Table 8-1).
CODING_SCHEME_SYSTEMS: dict[str, str] = {
    "SCT": codes.SNOMED_CT,
    "LN": codes.LOINC,
    "DCM": codes.DICOM_DCM,
    "RADLEX": "http://radlex.org",
    "UCUM": codes.UCUM,
}

#: Keys of one instance mapping (columns of ``dicom_instances`` and ``dicom_instance_attributes``).
INSTANCE_KEYS = (
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "sop_class_uid",
    "modality",
    "patient_id",
    "accession_number",
    "issuer_of_patient_id",
    "patient_name",
    "patient_birth_date",
    "patient_sex",
    "study_date",
    "study_time",
    "timezone_offset_from_utc",
    "study_id",
    "study_description",
    "referring_physician_name",
    "procedure_codes",
    "series_number",
    "series_description",
    "series_date",
    "series_time",
    "body_part_examined",
    "laterality",
    "instance_number",
    "number_of_frames",
    "rows",
    "columns",
    "bits_allocated",
)


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


#: The range of an IS value (PS3.5 6.2), also that of the integer columns imaging keeps them in.
_IS_RANGE = range(-(2**31), 2**31)


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    """The value as an ``int``; None when absent, no number or outside the IS range (PS3.5 6.2)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number in _IS_RANGE else None


def _procedure_codes(ds: pydicom.Dataset) -> list[dict[str, str]]:
    out = []
    for item in ds.get("ProcedureCodeSequence") or []:
        code = _text(item, "CodeValue") or _text(item, "LongCodeValue") or _text(item, "URNCodeValue")
        if code:
            out.append(
                {"code": code, "scheme": _text(item, "CodingSchemeDesignator"), "meaning": _text(item, "CodeMeaning")}
            )
    return out


def instance_attributes(ds: pydicom.Dataset) -> dict[str, Any]:
    """The attributes of one instance that ImagingStudy and QIDO-RS use, keyed as :data:`INSTANCE_KEYS`.

    Text values are stripped strings ("" when absent); numbers are ``int`` or None; ``procedure_codes``
    is a list of ``{"code", "scheme", "meaning"}`` from the Procedure Code Sequence (0008,1032).
    """
    return {
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "series_instance_uid": _text(ds, "SeriesInstanceUID"),
        "sop_class_uid": _text(ds, "SOPClassUID"),
        "modality": _text(ds, "Modality"),
        "patient_id": _text(ds, "PatientID"),
        "accession_number": _text(ds, "AccessionNumber"),
        "issuer_of_patient_id": _text(ds, "IssuerOfPatientID"),
        "patient_name": _text(ds, "PatientName"),
        "patient_birth_date": _text(ds, "PatientBirthDate"),
        "patient_sex": _text(ds, "PatientSex"),
        "study_date": _text(ds, "StudyDate"),
        "study_time": _text(ds, "StudyTime"),
        "timezone_offset_from_utc": _text(ds, "TimezoneOffsetFromUTC"),
        "study_id": _text(ds, "StudyID"),
        "study_description": _text(ds, "StudyDescription"),
        "referring_physician_name": _text(ds, "ReferringPhysicianName"),
        "procedure_codes": _procedure_codes(ds),
        "series_number": _int(ds, "SeriesNumber"),
        "series_description": _text(ds, "SeriesDescription"),
        "series_date": _text(ds, "SeriesDate"),
        "series_time": _text(ds, "SeriesTime"),
        "body_part_examined": _text(ds, "BodyPartExamined").upper(),
        "laterality": _text(ds, "Laterality").upper(),
        "instance_number": _int(ds, "InstanceNumber"),
        "number_of_frames": _int(ds, "NumberOfFrames"),
        "rows": _int(ds, "Rows"),
        "columns": _int(ds, "Columns"),
        "bits_allocated": _int(ds, "BitsAllocated"),
    }


_TZ = re.compile(r"^[+-](\d{2})(\d{2})$")


def fhir_datetime(date: str, time: str, timezone_offset: str = "") -> str | None:
    """FHIR dateTime from DICOM DA + TM (PS3.5 6.2) and Timezone Offset From UTC (0008,0201).

    Without a time the result is the date alone. FHIR requires an offset with a time; when the
    instance has no (0008,0201) the time is taken as UTC, as :func:`radcds.adapters.fhir.report.dicom_datetime`
    does. None when the date is absent or malformed.
    """
    date = date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    whole, _, fraction = time.strip().replace(":", "").partition(".")
    if len(whole) not in (2, 4, 6) or not whole.isdigit():
        return out
    hh, mm, ss = whole[:2], whole[2:4] or "00", whole[4:6] or "00"
    out += f"T{hh}:{mm}:{ss}"
    if fraction.isdigit() and len(whole) == 6:
        out += f".{fraction}"
    offset = timezone_offset.strip()
    tz = _TZ.match(offset)
    out += f"{offset[0]}{tz.group(1)}:{tz.group(2)}" if tz else "Z"
    return out


def person_name_display(value: str) -> str:
    """Readable DICOM PN (PS3.5 6.2.1): "Family^Given^Middle^Prefix^Suffix" as "Prefix Given Middle Family Suffix"."""
    alphabetic = value.split("=")[0]
    family, given, middle, prefix, suffix = ([*alphabetic.split("^"), "", "", "", ""])[:5]
    return " ".join(p.strip() for p in (prefix, given, middle, family, suffix) if p.strip())


def _coding(c: Coding) -> dict[str, str]:
    return {"system": c.system, "code": c.code, "display": c.display}


def modality_coding(modality: str) -> dict[str, str]:
    """A Modality (0008,0060) as a DCM Coding; "OT" (other) when absent."""
    code = modality or "OT"
    out = {"system": codes.DICOM_DCM, "code": code}
    if code in MODALITY_DISPLAY:
        out["display"] = MODALITY_DISPLAY[code]
    return out


def _procedure_code(c: Mapping[str, str]) -> dict[str, Any]:
    coding: dict[str, str] = {"code": c["code"]}
    system = CODING_SCHEME_SYSTEMS.get(c.get("scheme", "").upper())
    if system:
        coding = {"system": system, **coding}
    if c.get("meaning"):
        coding["display"] = c["meaning"]
    concept: dict[str, Any] = {"coding": [coding]}
    if c.get("meaning"):
        concept["text"] = c["meaning"]
    return concept


def _first(rows: list[Mapping[str, Any]], key: str) -> Any:
    return next((r[key] for r in rows if r.get(key) not in (None, "", [])), None)


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _order(value: Any) -> int:
    return value if isinstance(value, int) else 2**31


def _series(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    first = rows[0]
    series: dict[str, Any] = {"uid": first["series_instance_uid"]}
    number = _number(_first(rows, "series_number"))
    if number is not None:
        series["number"] = number
    series["modality"] = modality_coding(_first(rows, "modality") or "")
    description = _first(rows, "series_description")
    if description:
        series["description"] = description
    series["numberOfInstances"] = len(rows)
    body_part = BODY_PART_SNOMED.get((_first(rows, "body_part_examined") or "").upper())
    if body_part:
        series["bodySite"] = _coding(body_part)
    laterality = LATERALITY_SNOMED.get((_first(rows, "laterality") or "").upper())
    if laterality:
        series["laterality"] = _coding(laterality)
    dated = []
    for r in rows:
        tz = r.get("timezone_offset_from_utc") or ""
        started = fhir_datetime(r.get("series_date") or "", r.get("series_time") or "", tz)
        if started:
            dated.append((r.get("series_date") or "", r.get("series_time") or "", started))
    dated.sort()
    if dated:
        series["started"] = dated[0][2]
    instances = []
    for r in sorted(rows, key=lambda r: (_order(r.get("instance_number")), r["sop_instance_uid"])):
        instance: dict[str, Any] = {
            "uid": r["sop_instance_uid"],
            "sopClass": {"system": URI_SYSTEM, "code": f"urn:oid:{r['sop_class_uid']}"},
        }
        n = _number(r.get("instance_number"))
        if n is not None:
            instance["number"] = n
        instances.append(instance)
    series["instance"] = instances
    return series


def wado_endpoint(wado_base_url: str) -> dict[str, Any]:
    """A DICOMweb WADO-RS Endpoint (FHIR R4 Endpoint, connection type ``dicom-wado-rs``).

    Its address is the service root: a study is at ``{address}/studies/{uid}`` (R4 ImagingStudy notes).
    """
    return {
        "resourceType": "Endpoint",
        "id": ENDPOINT_ID,
        "status": "active",
        "connectionType": {"system": ENDPOINT_CONNECTION_TYPE, "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM WADO-RS"}],
        "payloadMimeType": ["application/dicom"],
        "address": wado_base_url.rstrip("/"),
    }


def imaging_study_from_instances(
    rows: Iterable[Mapping[str, Any]], *, wado_base_url: str, patient_reference: str
) -> dict[str, Any]:
    """The R4 ImagingStudy of one study from its instances (keys as :data:`INSTANCE_KEYS`), validated.

    ``wado_base_url`` is the DICOMweb root (e.g. ``http://imaging:8080/dicom-web``), used as the
    contained Endpoint's address; ``patient_reference`` is the subject (e.g. ``Patient/<id>``).
    Raises ``ValueError`` when ``rows`` is empty or spans several studies, and
    :class:`~radcds.adapters.fhir.resources.InvalidResource` if the result is not valid R4.
    """
    instances = sorted(
        {r["sop_instance_uid"]: r for r in rows}.values(),
        key=lambda r: (_order(r.get("series_number")), _order(r.get("instance_number")), r["sop_instance_uid"]),
    )
    if not instances:
        raise ValueError("an ImagingStudy needs at least one instance")
    study_uids = {r["study_instance_uid"] for r in instances}
    if len(study_uids) != 1:
        raise ValueError(f"instances of {len(study_uids)} studies given; an ImagingStudy covers one")
    (study_uid,) = study_uids

    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for r in instances:
        by_series.setdefault(r["series_instance_uid"], []).append(r)
    series = sorted((_series(rs) for rs in by_series.values()), key=lambda s: (_order(s.get("number")), s["uid"]))

    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": imaging_study_id(study_uid),
        "contained": [wado_endpoint(wado_base_url)],
        "identifier": [{"use": "official", "system": codes.DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}],
        "status": "available",
        "modality": [modality_coding(m) for m in sorted({s["modality"]["code"] for s in series})],
        "subject": {"reference": patient_reference},
    }
    accession = _first(instances, "accession_number")
    if accession:
        study["identifier"].append(
            {"use": "usual", "type": {"coding": [{"system": codes.V2_0203, "code": "ACSN"}]}, "value": accession}
        )
    with_date = sorted(
        (r for r in instances if r.get("study_date")), key=lambda r: (r["study_date"], r.get("study_time") or "")
    )
    if with_date:
        r = with_date[0]
        started = fhir_datetime(r["study_date"], r.get("study_time") or "", r.get("timezone_offset_from_utc") or "")
        if started:
            study["started"] = started
    referrer = person_name_display(_first(instances, "referring_physician_name") or "")
    if referrer:
        study["referrer"] = {"display": referrer}
    study["endpoint"] = [{"reference": f"#{ENDPOINT_ID}"}]
    study["numberOfSeries"] = len(series)
    study["numberOfInstances"] = len(instances)
    procedures = _first(instances, "procedure_codes")
    if procedures:
        study["procedureCode"] = [_procedure_code(c) for c in procedures]
    description = _first(instances, "study_description")
    if description:
        study["description"] = description
    study["series"] = series
    return validate_resource(study)
