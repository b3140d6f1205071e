"""A study's locators from the announced FHIR ImagingStudy or from QIDO-RS.

The R4 ImagingStudy (imaging-study-available.v1) lists ``series[].uid``, ``series[].modality``
and ``series[].instance[].uid/sopClass``; its contained ``Endpoint`` (``dicom-wado-rs``) is the
DICOMweb root, so an instance is at ``{address}/studies/{study}/series/{series}/instances/{sop}``
(PS3.18 10.4.1, R4 ImagingStudy notes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from radcds_inference.domain.study import InstanceLocator, SeriesLocator, StudyLocator, instance_url


def _oid(value: str) -> str:
    return value.removeprefix("urn:oid:")


def study_from_imaging_study(imaging_study: Mapping[str, Any], *, study_instance_uid: str) -> StudyLocator:
    """A :class:`StudyLocator` from an R4 ImagingStudy with a contained WADO-RS Endpoint.

    Raises:
        ValueError: no WADO-RS endpoint address.
    """
    endpoints = {
        f"#{c.get('id')}": c for c in imaging_study.get("contained", []) if c.get("resourceType") == "Endpoint"
    }
    address = ""
    for ref in imaging_study.get("endpoint", []):
        endpoint = endpoints.get(ref.get("reference", ""))
        if endpoint and endpoint.get("address"):
            address = str(endpoint["address"])
            break
    if not address:
        raise ValueError("the ImagingStudy names no WADO-RS endpoint")
    series = []
    for s in imaging_study.get("series", []):
        uid = str(s["uid"])
        instances = tuple(
            InstanceLocator(
                str(i["uid"]),
                _oid(str(i.get("sopClass", {}).get("code", ""))),
                instance_url(address, study_instance_uid, uid, str(i["uid"])),
            )
            for i in s.get("instance", [])
        )
        series.append(SeriesLocator(uid, str(s.get("modality", {}).get("code", "")), instances))
    return StudyLocator(study_instance_uid, tuple(series))


def _value(item: Mapping[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def study_from_qido(study_instance_uid: str, matches: Iterable[Mapping[str, Any]], *, base_url: str) -> StudyLocator:
    """A :class:`StudyLocator` from QIDO-RS instance matches (DICOM JSON, PS3.18 F.2) of one study."""
    by_series: dict[str, tuple[str, list[tuple[int, InstanceLocator]]]] = {}
    for m in matches:
        series_uid = _value(m, "0020000E")
        sop = _value(m, "00080018")
        number = _value(m, "00200013")
        _, items = by_series.setdefault(series_uid, (_value(m, "00080060"), []))
        items.append(
            (
                int(number) if number.lstrip("-").isdigit() else 2**31,
                InstanceLocator(
                    sop, _value(m, "00080016"), instance_url(base_url, study_instance_uid, series_uid, sop)
                ),
            )
        )
    return StudyLocator(
        study_instance_uid,
        tuple(
            SeriesLocator(
                uid, modality, tuple(i for _, i in sorted(items, key=lambda x: (x[0], x[1].sop_instance_uid)))
            )
            for uid, (modality, items) in by_series.items()
        ),
    )
