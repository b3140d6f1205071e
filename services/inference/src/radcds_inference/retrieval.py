"""WADO-RS instance retrieval from imaging (PS3.18 10.4, multipart/related; type=application/dicom)."""

from __future__ import annotations

import httpx

from radcds.adapters.dicomweb.multipart import parse_content_type, split_parts
from radcds.adapters.kafka.consumer import RetryableError


class WadoRsRetriever:
    """Fetches one instance; connection problems and 5xx are retryable, 4xx are not."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def fetch(self, url: str) -> bytes:
        """Return the Part 10 bytes of the first part of the response."""
        try:
            response = self._client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
        except httpx.TransportError as exc:
            raise RetryableError(f"imaging unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise RetryableError(f"imaging answered {response.status_code}")
        if response.status_code != 200:
            raise LookupError(f"WADO-RS retrieve answered {response.status_code}")
        _, params = parse_content_type(response.headers.get("content-type", ""))
        return split_parts(response.content, params.get("boundary", ""))[0].content
