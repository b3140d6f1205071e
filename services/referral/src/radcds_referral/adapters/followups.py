"""radcds's own follow-up recommendations, read from fusion's FHIR API for ``patient-view``.

fusion keeps every recommendation it made as a FHIR R4 ServiceRequest (``intent: proposal``) with the identifier
the EHR knows the patient by. For a ``patient-view`` call, referral asks fusion for the patient's active ones by
that identifier (``GET {fusion}/ServiceRequest?patient.identifier={value}&status=active``, FHIR R4 chained search)
and adds them to the recommendations the EHR prefetched, so the overdue-follow-up rule sees both. A slow or absent
fusion costs at most ``timeout_s`` and adds nothing; it never fails the call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)
#: At most this many of the patient's identifiers are looked up (an EHR Patient has a handful).
MAX_IDENTIFIERS = 5


class FusionFollowUps:
    """Reads a patient's active radcds recommendations from fusion's FHIR API."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, timeout_s: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s

    async def open_for(self, patient: dict[str, Any] | None, *, timeout_s: float | None = None) -> list[dict[str, Any]]:
        """Active ServiceRequests fusion holds for ``patient`` (an EHR Patient resource), by its identifiers.

        ``timeout_s`` (what is left of the call's latency budget) caps the configured timeout, for all the reads
        together: a read starts only while some of it is left."""
        if not patient:
            return []
        deadline = None if timeout_s is None else time.monotonic() + min(self._timeout, timeout_s)
        # system|value (FHIR token): fusion matches only its MRN system, so another system's equal digits never
        # bring another patient's card; an identifier without a system is sent as its value alone.
        values = [
            f"{i['system']}|{i['value']}" if i.get("system") else str(i["value"])
            for i in patient.get("identifier", [])
            if isinstance(i, dict) and i.get("value") and i.get("use") != "old"
        ][:MAX_IDENTIFIERS]
        found: dict[str, dict[str, Any]] = {}
        for value in values:
            timeout = self._timeout if deadline is None else deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                response = await self._http.get(
                    f"{self._base}/ServiceRequest",
                    params={"patient.identifier": value, "status": "active"},
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                log.warning("fusion recommendations not read", extra={"error_class": type(exc).__name__})
                break
            if response.status_code != 200:
                log.warning("fusion recommendations not read", extra={"status": response.status_code})
                break
            for entry in response.json().get("entry", []):
                resource = entry.get("resource", {})
                if resource.get("resourceType") == "ServiceRequest" and resource.get("id"):
                    found[resource["id"]] = resource
        return list(found.values())
