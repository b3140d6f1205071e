"""DICOMweb client of imaging: WADO-RS retrieve (PS3.18 10.4), QIDO-RS search (10.6), STOW-RS store (10.5).

Connection problems, timeouts and 5xx answers are :class:`RetryableError` (imaging is down: try
again later); other answers are errors of the request.
"""

from __future__ import annotations

import asyncio

import httpx

from radcds.adapters.dicomweb.multipart import build_related, parse_content_type, split_parts
from radcds.adapters.kafka.consumer import RetryableError
from radcds_inference.adapters.study_codec import study_from_qido
from radcds_inference.domain.study import StudyLocator

DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


class StoreRejected(RuntimeError):
    """Imaging refused to store an instance (STOW-RS 4xx or a failed-SOP item)."""


class DicomWebClient:
    """Async DICOMweb calls to imaging at ``base_url`` (e.g. ``http://imaging:8082/dicom-web``)."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, max_parallel: int = 4) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self._parallel = asyncio.Semaphore(max_parallel)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        params: tuple[tuple[str, str], ...] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        try:
            async with self._parallel:
                response = await self._client.request(method, url, headers=headers, params=params, content=content)
        except httpx.TransportError as exc:
            raise RetryableError(f"imaging unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise RetryableError(f"imaging answered {response.status_code}")
        return response

    async def retrieve_instance(self, url: str) -> bytes:
        """The Part 10 bytes of one instance (WADO-RS RetrieveInstance)."""
        response = await self._request("GET", url, headers={"Accept": DICOM_MULTIPART})
        if response.status_code != 200:
            raise LookupError(f"WADO-RS retrieve answered {response.status_code}")
        _, params = parse_content_type(response.headers.get("content-type", ""))
        return split_parts(response.content, params.get("boundary", ""))[0].content

    async def find_study(self, study_instance_uid: str) -> StudyLocator:
        """The study's series and instances (QIDO-RS SearchForInstances); LookupError when imaging has none."""
        response = await self._request(
            "GET",
            f"{self.base_url}/studies/{study_instance_uid}/instances",
            params=(("includefield", "00080060"), ("includefield", "0020000E"), ("limit", "1000")),
            headers={"Accept": "application/dicom+json"},
        )
        if response.status_code == 204 or (response.status_code == 200 and not response.content.strip()):
            raise LookupError(f"imaging holds no study {study_instance_uid}")
        if response.status_code == 404:
            raise LookupError(f"imaging holds no study {study_instance_uid}")
        if response.status_code != 200:
            raise RuntimeError(f"QIDO-RS answered {response.status_code}")
        matches = response.json()
        if not matches:
            raise LookupError(f"imaging holds no study {study_instance_uid}")
        return study_from_qido(study_instance_uid, matches, base_url=self.base_url)

    async def store(self, part10: bytes, *, study_instance_uid: str) -> None:
        """STOW-RS one instance into the study; a duplicate (already stored) counts as stored."""
        body, boundary = build_related([("application/dicom", part10)])
        response = await self._request(
            "POST",
            f"{self.base_url}/studies/{study_instance_uid}",
            content=body,
            headers={
                "Content-Type": f"{DICOM_MULTIPART}; boundary={boundary}",
                "Accept": "application/dicom+json",
            },
        )
        if response.status_code != 200:
            raise StoreRejected(f"STOW-RS answered {response.status_code}: {response.text[:200]}")
