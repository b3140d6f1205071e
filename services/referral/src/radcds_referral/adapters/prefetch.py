"""Prefetch and FHIR fallback (CDS Hooks 2.0 "Providing FHIR Resources to a CDS Service").

For each prefetch key a service declares:

- the key's value is a resource or a search Bundle: use it;
- the value is ``null``: the EHR looked and found nothing (for a search: no results);
- the value is an OperationOutcome, or the key is absent: the EHR could not or did not fill it,
  so query ``fhirServer`` with ``fhirAuthorization`` when both are given;
- still unavailable: :class:`DataUnavailable`, answered with 412;
- the FHIR server is slower than the budget: :class:`BudgetExceeded`, answered with ``cards: []``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx

from radcds_referral.adapters.protocol import CdsRequest

_TOKEN = re.compile(r"\{\{\s*context\.(\w+)\s*\}\}")


class DataUnavailable(Exception):
    """Data the service needs is neither prefetched nor retrievable (HTTP 412)."""


class BudgetExceeded(Exception):
    """The FHIR fallback did not answer within the latency budget (answer ``cards: []``)."""


@dataclass(frozen=True, slots=True)
class Gathered:
    """Resources per prefetch key, and which keys came from the FHIR fallback."""

    resources: dict[str, list[dict[str, Any]]]
    fetched: frozenset[str]


def render(template: str, context: dict[str, Any]) -> str:
    """Fill ``{{context.x}}`` tokens of a prefetch template."""

    def value(match: re.Match[str]) -> str:
        v = context.get(match.group(1))
        if not isinstance(v, str):
            raise DataUnavailable(f"prefetch template needs context.{match.group(1)}")
        return v

    return _TOKEN.sub(value, template)


def _resources(value: dict[str, Any]) -> list[dict[str, Any]]:
    if value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry", []) or []
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") != "OperationOutcome"
        ]
    return [value]


async def gather(
    request: CdsRequest,
    templates: dict[str, str],
    *,
    http: httpx.AsyncClient,
    timeout_s: float,
    budget_s: float,
) -> Gathered:
    """Resolve every key of ``templates`` from the prefetch or the FHIR fallback."""
    resources: dict[str, list[dict[str, Any]]] = {}
    to_fetch: dict[str, str] = {}
    for key, template in templates.items():
        if key in request.prefetch:
            value = request.prefetch[key]
            if value is None:
                resources[key] = []
                continue
            if isinstance(value, dict) and value.get("resourceType") not in (None, "OperationOutcome"):
                resources[key] = _resources(value)
                continue
        to_fetch[key] = render(template, request.context)
    if not to_fetch:
        return Gathered(resources, frozenset())
    if request.fhir_server is None or request.fhir_authorization is None:
        raise DataUnavailable(f"not prefetched and no fhirServer to query: {', '.join(sorted(to_fetch))}")
    base = request.fhir_server.rstrip("/")
    headers = {"Authorization": f"Bearer {request.fhir_authorization.access_token}", "Accept": "application/fhir+json"}

    async def fetch(key: str, query: str) -> tuple[str, list[dict[str, Any]]]:
        try:
            response = await http.get(f"{base}/{query}", headers=headers, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise BudgetExceeded(f"FHIR fallback for {key} timed out") from exc
        except httpx.HTTPError as exc:
            raise DataUnavailable(f"FHIR fallback for {key} failed: {type(exc).__name__}") from exc
        if response.status_code == 404 and "?" not in query:
            raise DataUnavailable(f"{query.split('/')[0]} not found on the FHIR server")
        if response.status_code != 200:
            raise DataUnavailable(f"FHIR fallback for {key} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise DataUnavailable(f"FHIR fallback for {key} returned no JSON") from exc
        if not isinstance(body, dict) or body.get("resourceType") == "OperationOutcome":
            raise DataUnavailable(f"FHIR fallback for {key} returned an error")
        return key, _resources(body)

    try:
        results = await asyncio.wait_for(asyncio.gather(*(fetch(k, q) for k, q in to_fetch.items())), timeout=budget_s)
    except TimeoutError as exc:
        raise BudgetExceeded("FHIR fallback exceeded the latency budget") from exc
    resources.update(dict(results))
    return Gathered(resources, frozenset(to_fetch))
