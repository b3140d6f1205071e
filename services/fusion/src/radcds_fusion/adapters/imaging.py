"""Measurement SRs fetched from imaging over DICOMweb WADO-RS (PS3.18 10.4, RetrieveInstance)."""

from __future__ import annotations

from io import BytesIO

import httpx
import pydicom
from pydicom import Dataset

from radcds.adapters.dicomweb.multipart import MultipartError, parse_content_type, split_parts
from radcds.adapters.kafka.consumer import RetryableError

DICOM_MULTIPART = 'multipart/related; type="application/dicom"'
#: SR SOP classes that can hold a TID 1500 measurement report (PS3.4 B.5): Enhanced, Comprehensive,
#: Comprehensive 3D and Extensible SR.
MEASUREMENT_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.22",
        "1.2.840.10008.5.1.4.1.1.88.33",
        "1.2.840.10008.5.1.4.1.1.88.34",
        "1.2.840.10008.5.1.4.1.1.88.35",
    }
)


class ImagingInstances:
    """Retrieves one instance's data set from imaging's WADO-RS."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def retrieve(self, url: str) -> Dataset:
        """The data set at ``url`` (an instance-level WADO-RS URL).

        Raises:
            RetryableError: imaging is unreachable or answered 5xx (retry later; nothing is lost).
            LookupError: the instance is not there (4xx) or the answer is not a DICOM part.
        """
        try:
            response = self._client.get(url, headers={"Accept": DICOM_MULTIPART})
        except httpx.TransportError as exc:
            raise RetryableError(f"imaging unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise RetryableError(f"imaging answered {response.status_code}")
        if response.status_code != 200:
            raise LookupError(f"WADO-RS retrieve answered {response.status_code}")
        try:
            _, params = parse_content_type(response.headers.get("content-type", ""))
            part = split_parts(response.content, params.get("boundary", ""))[0]
        except (MultipartError, IndexError) as exc:
            raise LookupError(f"WADO-RS answer is not multipart/related DICOM: {exc}") from exc
        return pydicom.dcmread(BytesIO(part.content))
