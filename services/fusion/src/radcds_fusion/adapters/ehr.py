"""The patient's clinical context read from the EHR's FHIR R4 API (async httpx), degrading instead of failing.

What is read (FHIR R4 RESTful API §3.1.0 read and search, searchset Bundles §3.1.1.5 paged by ``link``
``next``), all for one patient, concurrently:

| source | query |
| --- | --- |
| Patient | ``GET Patient/{id}`` |
| Condition | ``GET Condition?patient={id}`` |
| Observation (smoking) | ``GET Observation?patient={id}&code=`` LOINC 72166-2, SNOMED CT 401201003 and 160625004 |
| Observation (laboratory) | ``GET Observation?patient={id}&code=`` eGFR and creatinine LOINC codes |
| Device | ``GET Device?patient={id}`` |
| Procedure | ``GET Procedure?patient={id}`` |
| ImagingStudy | ``GET ImagingStudy?patient={id}`` |
| DiagnosticReport | ``GET DiagnosticReport?patient={id}`` |
| Observation (imaging) | ``GET Observation?patient={id}&category=imaging`` |

Every request has connect/read timeouts; every search follows ``next`` links up to ``max_pages`` pages and only
on the EHR's own origin (a token never leaves for another host). The whole read has one budget: sources not
answered by then are cancelled. A source that failed is named in ``ClinicalContext.missing`` with why —
``"Condition (timed out)"``, ``"Device (HTTP 503)"``, ``"Patient (EHR unreachable)"``, ``"ImagingStudy (over
the 3.0 s budget)"``, ``"Observation (smoking) (authorization failed: ...)"`` — and the context holds the rest;
nothing raises to the caller. Complete contexts are cached per patient and body region for ``cache_ttl_s``
(bounded LRU); contexts with something missing are not cached, so the next finding tries again. Logs name the
source and the reason, never the patient, a resource or a token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from radcds.domain.codes import LOINC, SNOMED_CT
from radcds_fusion.adapters import ehr_codes as codes
from radcds_fusion.adapters import ehr_mapping as mapping
from radcds_fusion.adapters.ehr_auth import EhrAuth, EhrAuthError
from radcds_fusion.domain.context import ClinicalContext

JSON = Mapping[str, Any]
log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

FHIR_JSON = "application/fhir+json"
_SMOKING_CODES = ",".join(
    [
        f"{LOINC}|{codes.SMOKING_STATUS_LOINC}",
        f"{SNOMED_CT}|{codes.PACK_YEARS_SNOMED}",
        f"{SNOMED_CT}|{codes.DATE_CEASED_SMOKING_SNOMED}",
        f"{codes.RADCDS_CONTEXT}|{codes.YEARS_SINCE_QUIT_RADCDS}",
    ]
)
_LAB_CODES = ",".join(
    f"{LOINC}|{c}" for c in (*codes.EGFR_LOINC, *codes.CREATININE_MASS_LOINC, *codes.CREATININE_MOLAR_LOINC)
)


class EhrReadError(Exception):
    """One read or search failed; ``reason`` says why in words fit for ``missing`` (no PHI, no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FhirReader(Protocol):
    """The port fusion reads the EHR through (FHIR R4 read and search)."""

    async def read(self, resource_type: str, resource_id: str) -> JSON:
        """``GET {type}/{id}``; raises :class:`EhrReadError`."""
        ...

    async def search(self, resource_type: str, params: Mapping[str, str]) -> list[JSON]:
        """``GET {type}?params``, every page; raises :class:`EhrReadError`."""
        ...


class TtlCache(Generic[K, V]):
    """A bounded LRU cache whose entries expire ``ttl_s`` after they were stored (injectable monotonic clock)."""

    def __init__(self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s must be >= 0 and max_entries >= 1")
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` unless it has expired."""
        item = self._items.get(key)
        if item is None:
            return None
        stored_at, value = item
        if self._clock() - stored_at >= self._ttl:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Store ``value``; the least recently used entry goes when the cache is full."""
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class HttpFhirReader:
    """:class:`FhirReader` over HTTP (httpx), with timeouts, paging and SMART Backend Services authorization."""

    def __init__(
        self,
        *,
        base_url: str,
        auth: EhrAuth,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 3.0,
        page_size: int = 50,
        max_pages: int = 20,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if page_size < 1 or max_pages < 1:
            raise ValueError("page_size and max_pages must be >= 1")
        self._base = base_url.rstrip("/")
        origin = urlsplit(self._base)
        self._origin = (origin.scheme, origin.netloc)
        self._auth = auth
        self._page_size = page_size
        self._max_pages = max_pages
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._owns_client = client is None
        self._timeout = timeout
        #: Pages fetched since start (for tests and metrics).
        self.pages_fetched = 0

    async def aclose(self) -> None:
        """Close the HTTP client (when this reader created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def _get(self, url: str, params: Mapping[str, str] | None = None) -> JSON:
        for attempt in (1, 2):
            try:
                headers = {"Accept": FHIR_JSON, **await self._auth.headers(self._client)}
            except EhrAuthError as exc:
                raise EhrReadError(f"authorization failed: {exc}") from None
            try:
                response = await self._client.get(url, params=params, headers=headers, timeout=self._timeout)
            except httpx.TimeoutException:
                raise EhrReadError("timed out") from None
            except httpx.TransportError:
                raise EhrReadError("EHR unreachable") from None
            if response.status_code == 401 and attempt == 1:
                self._auth.invalidate()  # an expired or revoked token: one more try with a new one
                continue
            if response.status_code != 200:
                raise EhrReadError(f"HTTP {response.status_code}")
            try:
                body = response.json()
            except ValueError:
                raise EhrReadError("invalid response: not JSON") from None
            if not isinstance(body, dict):
                raise EhrReadError("invalid response: not a resource")
            return body
        raise EhrReadError("HTTP 401")

    async def read(self, resource_type: str, resource_id: str) -> JSON:
        """``GET {base}/{type}/{id}``."""
        body = await self._get(f"{self._base}/{resource_type}/{resource_id}")
        if body.get("resourceType") != resource_type:
            raise EhrReadError(f"invalid response: not a {resource_type}")
        return body

    async def search(self, resource_type: str, params: Mapping[str, str]) -> list[JSON]:
        """``GET {base}/{type}?params&_count=N``, then each ``next`` page (FHIR R4 §3.1.1.5 paging)."""
        resources: list[JSON] = []
        url: str | None = f"{self._base}/{resource_type}"
        query: Mapping[str, str] | None = {**params, "_count": str(self._page_size)}
        pages = 0
        while url is not None:
            if pages == self._max_pages:
                raise EhrReadError(f"more than {self._max_pages} pages")
            bundle = await self._get(url, query)
            pages += 1
            self.pages_fetched += 1
            if bundle.get("resourceType") != "Bundle":
                raise EhrReadError("invalid response: not a Bundle")
            for entry in bundle.get("entry") or []:
                if not isinstance(entry, Mapping):
                    continue
                mode = (entry.get("search") or {}).get("mode") if isinstance(entry.get("search"), Mapping) else None
                resource = entry.get("resource")
                if (
                    isinstance(resource, Mapping)
                    and mode in (None, "match")
                    and resource.get("resourceType") == resource_type
                ):
                    resources.append(resource)
            url, query = self._next_link(bundle), None
        return resources

    def _next_link(self, bundle: JSON) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                target = urlsplit(link["url"])
                if (target.scheme, target.netloc) != self._origin:
                    raise EhrReadError("paging link outside the EHR")
                return str(link["url"])
        return None


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


class EhrContextReader:
    """Reads a patient's :class:`ClinicalContext` through a :class:`FhirReader` within one time budget."""

    def __init__(
        self,
        *,
        reader: FhirReader,
        budget_s: float = 5.0,
        cache_ttl_s: float = 300.0,
        cache_max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = date.today,
    ) -> None:
        if budget_s <= 0:
            raise ValueError("budget_s must be positive")
        self._reader = reader
        self._budget = budget_s
        self._today = today
        self._cache: TtlCache[tuple[str, str], ClinicalContext] = TtlCache(
            ttl_s=cache_ttl_s, max_entries=cache_max_entries, clock=clock
        )

    async def context(self, patient_id: str, *, body_region: str = "chest") -> ClinicalContext:
        """The patient's context; what could not be read within the budget is named in ``missing``."""
        if body_region not in codes.BODY_REGIONS:
            raise ValueError(f"unknown body region {body_region!r}; known: {sorted(codes.BODY_REGIONS)}")
        key = (patient_id, body_region)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        p = {"patient": patient_id}
        jobs: dict[str, Callable[[], Awaitable[Any]]] = {
            "Patient": lambda: self._reader.read("Patient", patient_id),
            "Condition": lambda: self._reader.search("Condition", p),
            "Observation (smoking)": lambda: self._reader.search("Observation", {**p, "code": _SMOKING_CODES}),
            "Observation (laboratory)": lambda: self._reader.search("Observation", {**p, "code": _LAB_CODES}),
            "Device": lambda: self._reader.search("Device", p),
            "Procedure": lambda: self._reader.search("Procedure", p),
            "ImagingStudy": lambda: self._reader.search("ImagingStudy", p),
            "DiagnosticReport": lambda: self._reader.search("DiagnosticReport", p),
            "Observation (imaging)": lambda: self._reader.search("Observation", {**p, "category": "imaging"}),
        }
        results = await self._run(jobs)
        context = self._assemble(results, body_region)
        if not context.missing:
            self._cache.put(key, context)
        return context

    async def _run(self, jobs: Mapping[str, Callable[[], Awaitable[Any]]]) -> dict[str, Any]:
        tasks = {name: asyncio.ensure_future(job()) for name, job in jobs.items()}
        try:
            _done, pending = await asyncio.wait(tasks.values(), timeout=self._budget)
        except asyncio.CancelledError:
            for task in tasks.values():  # the caller gave up: no request outlives it
                task.cancel()
            raise
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        results: dict[str, Any] = {}
        for name, task in tasks.items():
            if task in pending:
                results[name] = _Failed(f"over the {self._budget:g} s budget")
            elif isinstance(task.exception(), EhrReadError):
                results[name] = _Failed(task.exception().reason)  # type: ignore[union-attr]
            elif task.exception() is not None:
                log.warning("EHR source %s failed: %s", name, type(task.exception()).__name__)
                results[name] = _Failed("unexpected error")
            else:
                results[name] = task.result()
            if isinstance(results[name], _Failed):
                log.warning("EHR source %s not read: %s", name, results[name].reason)
        return results

    def _assemble(self, results: Mapping[str, Any], region: str) -> ClinicalContext:
        today = self._today()
        missing = tuple(f"{name} ({r.reason})" for name, r in results.items() if isinstance(r, _Failed))

        def ok(name: str) -> Any:
            r = results[name]
            return None if isinstance(r, _Failed) else r

        birth_date = sex = None
        if (patient := ok("Patient")) is not None:
            birth_date, sex = mapping.patient_demographics(patient)
        flags = mapping.condition_flags(c) if (c := ok("Condition")) is not None else None
        smoking = mapping.smoking_history(s, today=today) if (s := ok("Observation (smoking)")) is not None else None
        renal = mapping.renal_function(lab) if (lab := ok("Observation (laboratory)")) is not None else None
        devices = mapping.implanted_devices(ok("Device") or [], ok("Procedure") or [])
        procedures = mapping.procedure_names(ok("Procedure") or [])
        priors = mapping.prior_studies(
            ok("ImagingStudy") or [],
            ok("DiagnosticReport") or [],
            ok("Observation (imaging)") or [],
            region=region,
            before=today,
        )
        return ClinicalContext(
            birth_date=birth_date,
            sex=sex,
            known_cancer=flags.known_cancer if flags else None,
            copd=flags.copd if flags else None,
            immunosuppressed=flags.immunosuppressed if flags else None,
            smoking_status=smoking.status if smoking else None,
            pack_years=smoking.pack_years if smoking else None,
            years_since_quit=smoking.years_since_quit if smoking else None,
            egfr_ml_min_173m2=renal.egfr_ml_min_173m2 if renal else None,
            creatinine_mg_dl=renal.creatinine_mg_dl if renal else None,
            devices=devices,
            procedures=procedures,
            prior_studies=priors,
            missing=missing,
        )


def ehr_context_reader(
    *,
    base_url: str,
    auth: EhrAuth,
    connect_timeout_s: float = 2.0,
    read_timeout_s: float = 3.0,
    budget_s: float = 5.0,
    page_size: int = 50,
    max_pages: int = 20,
    cache_ttl_s: float = 300.0,
    cache_max_entries: int = 1024,
) -> tuple[EhrContextReader, HttpFhirReader]:
    """The EHR context reader over HTTP, built from plain values (no settings object); close the second item."""
    http = HttpFhirReader(
        base_url=base_url,
        auth=auth,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        page_size=page_size,
        max_pages=max_pages,
    )
    reader = EhrContextReader(
        reader=http, budget_s=budget_s, cache_ttl_s=cache_ttl_s, cache_max_entries=cache_max_entries
    )
    return reader, http
