"""DICOM JSON (PS3.18 F.2) of imaging's answers: QIDO-RS matches (PS3.18 10.6.3) and WADO-RS metadata
(PS3.18 10.4.1.1.2), and the DICOM data dictionary (PS3.6) the QIDO-RS query parser resolves keys with."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from radcds_imaging.domain import qido
from radcds_imaging.domain.qido import ATTRIBUTES, QidoLevel, QidoQuery, returned_keywords

_S, _SE, _IN = QidoLevel.STUDY, QidoLevel.SERIES, QidoLevel.INSTANCE
#: Binary values longer than this many bytes leave the metadata as BulkDataURI (PS3.18 F.2.7).
BULK_DATA_THRESHOLD = 1024
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_OMITTED = "urn:radcds:omitted-bulk-data"
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_RETRIEVE_URL = ("RetrieveURL", "UR")
_INSTANCE_AVAILABILITY = ("InstanceAvailability", "CS")
#: Returned only when the instances carry a value (PS3.18 Table 6.7.1-2: "if present").
_ONLY_IF_PRESENT = frozenset({"TimezoneOffsetFromUTC"})
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def dicom_keyword(key: str) -> str:
    """The attribute keyword named by a query key (keyword or 8 hex digit tag, PS3.6), "" if none."""
    if _TAG.match(key):
        return keyword_for_tag(int(key, 16)) or ""
    return key if tag_for_keyword(key) is not None else ""


def parse_qido_query(
    level: QidoLevel | str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    *,
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    default_limit: int = 100,
    max_limit: int = 1000,
) -> QidoQuery:
    """:func:`radcds_imaging.domain.qido.parse_qido_query` with the keys resolved by pydicom's data dictionary."""
    return qido.parse_qido_query(
        level,
        params,
        study_instance_uid=study_instance_uid,
        series_instance_uid=series_instance_uid,
        keyword_of=dicom_keyword,
        default_limit=default_limit,
        max_limit=max_limit,
    )


def _element(vr: str, value: Any) -> dict[str, Any]:
    """A DICOM JSON attribute object (PS3.18 F.2.2); absent values give an element with no Value."""
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        groups = ("Alphabetic", "Ideographic", "Phonetic")
        return {
            "vr": vr,
            "Value": [{g: p for g, p in zip(groups, str(v).split("=")[:3], strict=False) if p} for v in values],
        }
    if vr in ("IS", "US"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _retrieve_url(base_url: str, level: QidoLevel, values: Mapping[str, Any]) -> str:
    url = f"{base_url}/dicom-web/studies/{values['StudyInstanceUID']}"
    if level is not _S:
        url += f"/series/{values['SeriesInstanceUID']}"
    if level is _IN:
        url += f"/instances/{values['SOPInstanceUID']}"
    return url


def qido_dataset(query: QidoQuery, values: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """One QIDO-RS match as a DICOM JSON dataset (PS3.18 F.2), attributes in tag order."""
    out: dict[str, Any] = {}
    for keyword in returned_keywords(query):
        value: Any
        if keyword == _RETRIEVE_URL[0]:
            vr, value = _RETRIEVE_URL[1], _retrieve_url(base_url, query.level, values)
        elif keyword == _INSTANCE_AVAILABILITY[0]:
            vr, value = _INSTANCE_AVAILABILITY[1], "ONLINE"
        elif keyword in ATTRIBUTES:
            vr, value = ATTRIBUTES[keyword].vr, values.get(keyword)
        else:
            continue  # asked for with includefield but not kept by imaging
        if keyword in _ONLY_IF_PRESENT and not value:
            continue
        tag = tag_for_keyword(keyword)
        assert tag is not None
        out[f"{tag:08X}"] = _element(vr, value)
    return dict(sorted(out.items()))


# --- WADO-RS metadata (PS3.18 10.4.1.1.2, F.2) ---------------------------------------------------------


def instance_metadata(ds: Dataset, *, bulk_data_uri: Callable[[int], str]) -> dict[str, Any]:
    """DICOM JSON of one instance; large top-level binary values become ``BulkDataURI`` (PS3.18 F.2.7).

    Pixel Data and large binary values nested in sequences are omitted.
    """

    def handler(elem: DataElement) -> str:
        top_level = elem.tag in ds and ds[elem.tag] is elem
        if not top_level or int(elem.tag) in PIXEL_DATA_TAGS:
            return _OMITTED
        return bulk_data_uri(int(elem.tag))

    result = ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=handler, suppress_invalid_tags=True
    )
    _strip_omitted(result)
    _non_finite_as_strings(result)
    return result


def _non_finite_as_strings(obj: dict[str, Any]) -> None:
    """FL, FD, OF and DS values may be NaN or infinite (PS3.5 6.2, CP-2352); a JSON number cannot (RFC 8259 6),
    so they are given as the strings ``NaN``, ``Infinity`` and ``-Infinity``, as JSON encoders of IEEE 754 values
    commonly do, instead of failing the whole answer."""
    for attr in obj.values():
        values = attr.get("Value", [])
        if attr.get("vr") == "SQ":
            for item in values:
                _non_finite_as_strings(item)
            continue
        for i, value in enumerate(values):
            if isinstance(value, float) and not math.isfinite(value):
                values[i] = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def _strip_omitted(obj: dict[str, Any]) -> None:
    for tag in list(obj):
        attr = obj[tag]
        if attr.get("BulkDataURI") == _OMITTED or int(tag, 16) in PIXEL_DATA_TAGS:
            del obj[tag]
        elif attr.get("vr") == "SQ":
            for item in attr.get("Value", []):
                _strip_omitted(item)


def metadata_of(data: bytes, *, bulk_data_uri: Callable[[int], str]) -> dict[str, Any]:
    """The WADO-RS metadata of one stored Part 10 instance (its header only; see :func:`instance_metadata`)."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return instance_metadata(ds, bulk_data_uri=bulk_data_uri)


def bulk_data(data: bytes, tag: int) -> bytes | None:
    """The binary value of the top-level attribute ``tag`` of a Part 10 instance (PS3.18 10.4.1.1.5), None when
    it has none there (Pixel Data is served as frames, not as bulk data)."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    elem = ds.get(tag) if tag not in PIXEL_DATA_TAGS else None
    if elem is None or elem.VR not in _BINARY_VRS or not isinstance(elem.value, bytes):
        return None
    return elem.value
