"""imaging's DICOMweb, read by the worklist over HTTP (httpx): instance metadata and rendered key images.

- Instance metadata: WADO-RS RetrieveInstanceMetadata ``GET {root}/studies/{s}/series/{se}/instances/{i}/metadata``
  (DICOM PS3.18 10.4.1.1.2), answered as DICOM JSON (PS3.18 Annex F.2: an array of one object keyed by tag, each
  ``{"vr": ..., "Value": [...]}``). Monitoring reads the acquisition attributes input drift is watched on.
- Rendered key image: ``GET .../instances/{i}/frames/{f}/rendered`` (PS3.18 10.4.1.1.3, RetrieveRenderedFrames)
  with the rendering query parameters of PS3.18 8.3.5.1.3: ``window=center,width,linear`` (VOI windowing) and
  ``viewport=vw,vh``; ``Accept: image/png`` (PS3.18 8.7.4).

Errors: :class:`ImagingUnavailable` when imaging cannot be reached or answers 5xx (try later), ``LookupError`` when
the instance is not there (4xx). URLs carry only UIDs; nothing here logs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from radcds_worklist.domain.monitoring import Acquisition

DICOM_JSON = "application/dicom+json"
PNG = "image/png"
#: DICOM tags (group, element as 8 hex digits, PS3.18 F.2.1.1) read for monitoring.
MANUFACTURER = "00080070"
MANUFACTURER_MODEL_NAME = "00081090"
KVP = "00180060"
SLICE_THICKNESS = "00180050"
PATIENT_AGE = "00101010"
PATIENT_BIRTH_DATE = "00100030"
STUDY_DATE = "00080020"


class ImagingUnavailable(Exception):
    """imaging could not be reached or failed (HTTP 5xx): nothing is wrong with the request; retry later."""


@dataclass(frozen=True, slots=True)
class RenderedImage:
    """A rendered frame: the encoded image and its media type."""

    content: bytes
    media_type: str


def _first(element: Mapping[str, Any] | None) -> Any:
    if not element:
        return None
    values = element.get("Value") or []
    return values[0] if values else None


def _text(dataset: Mapping[str, Any], tag: str) -> str:
    value = _first(dataset.get(tag))
    return "" if value is None else str(value).strip()


def _number(dataset: Mapping[str, Any], tag: str) -> float | None:
    """A DS or IS value: a JSON number (PS3.18 F.2.3) or, as some servers send it, a numeric string."""
    value = _first(dataset.get(tag))
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def acquisition_of(dataset: Mapping[str, Any]) -> Acquisition:
    """The monitored attributes of one DICOM JSON instance object (absent or empty attributes stay empty)."""
    return Acquisition(
        manufacturer=_text(dataset, MANUFACTURER),
        manufacturer_model=_text(dataset, MANUFACTURER_MODEL_NAME),
        kvp=_number(dataset, KVP),
        slice_thickness_mm=_number(dataset, SLICE_THICKNESS),
        patient_age=_text(dataset, PATIENT_AGE),
        patient_birth_date=_text(dataset, PATIENT_BIRTH_DATE),
        study_date=_text(dataset, STUDY_DATE),
    )


class ImagingClient:
    """Reads instance metadata and rendered frames from imaging's DICOMweb root (``imaging_dicomweb_url``)."""

    def __init__(self, client: httpx.Client, *, dicomweb_url: str) -> None:
        self._client = client
        self._root = dicomweb_url.rstrip("/")

    def _instance_url(self, study: str, series: str, instance: str) -> str:
        return f"{self._root}/studies/{study}/series/{series}/instances/{instance}"

    def _get(self, url: str, *, accept: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            response = self._client.get(url, params=params, headers={"Accept": accept})
        except httpx.TransportError as exc:
            raise ImagingUnavailable(f"imaging unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise ImagingUnavailable(f"imaging answered {response.status_code}")
        if response.status_code != 200:
            raise LookupError(f"imaging answered {response.status_code}")
        return response

    def instance_metadata(self, study: str, series: str, instance: str) -> dict[str, Any]:
        """The instance's DICOM JSON object (PS3.18 F.2); ``LookupError`` when the answer holds none."""
        response = self._get(f"{self._instance_url(study, series, instance)}/metadata", accept=DICOM_JSON)
        try:
            body = response.json()
        except ValueError as exc:
            raise LookupError("instance metadata is not JSON") from exc
        if not isinstance(body, list) or not body or not isinstance(body[0], dict):
            raise LookupError("instance metadata holds no DICOM JSON object")
        return body[0]

    def acquisition(self, study: str, series: str, instance: str) -> Acquisition:
        """The monitored acquisition attributes of one instance."""
        return acquisition_of(self.instance_metadata(study, series, instance))

    def rendered(
        self,
        study: str,
        series: str,
        instance: str,
        *,
        frame: int = 1,
        window: str | None = None,
        viewport: tuple[int, int] | None = None,
    ) -> RenderedImage:
        """One frame rendered as PNG; ``window`` is passed through as given (``center,width,linear``), ``viewport``
        as ``vw,vh``."""
        if frame < 1:
            raise ValueError("frames are numbered from 1 (PS3.18 10.4.1.1.3)")
        params: dict[str, str] = {}
        if window:
            params["window"] = window
        if viewport is not None:
            params["viewport"] = f"{viewport[0]},{viewport[1]}"
        url = f"{self._instance_url(study, series, instance)}/frames/{frame}/rendered"
        response = self._get(url, accept=PNG, params=params)
        return RenderedImage(response.content, response.headers.get("content-type", PNG).split(";")[0].strip())
