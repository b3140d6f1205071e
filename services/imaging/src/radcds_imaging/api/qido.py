"""QIDO-RS routes (DICOM PS3.18 section 10.6): parse the request, run the search, map the result.

The query model and the search itself live in :mod:`radcds_imaging.adapters.db.qido`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from radcds_imaging.adapters.db.qido import QidoQueries
from radcds_imaging.adapters.dicom_json import parse_qido_query
from radcds_imaging.domain.qido import QidoLevel

DICOM_JSON = "application/dicom+json"
#: Agent named in ``Warning`` headers (RFC 7234 5.5, as PS3.18 8.3.4 uses them).
WARN_AGENT = "radcds-imaging"


def _media_type(accept: str | None) -> str | None:
    """The response type for an Accept header: DICOM JSON (PS3.18 8.7.3.2), plain JSON, or None (406)."""
    if not accept:
        return DICOM_JSON
    offered: list[str] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p.split("=", 1)[1] for p in params if p.replace(" ", "").startswith("q=")), "1")
        try:
            if float(q) <= 0:
                continue
        except ValueError:
            pass
        offered.append(media.lower())
    for media in offered:
        if media in (DICOM_JSON, "application/*", "*/*"):
            return DICOM_JSON
        if media == "application/json":
            return "application/json"
    return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def qido_router(*, queries: QidoQueries, default_limit: int = 100, max_limit: int = 1000) -> APIRouter:
    """QIDO-RS routes under ``/dicom-web``, answered by ``queries``.

    200 with a DICOM JSON array, 204 when nothing matches, 400 for a query that cannot be run,
    406 for an Accept header without DICOM JSON. A ``Warning: 299`` header reports a capped
    ``limit``, more results beyond this page, or an ignored ``fuzzymatching=true``.
    """
    router = APIRouter(prefix="/dicom-web", tags=["DICOMweb"])

    def respond(request: Request, level: QidoLevel, study: str | None = None, series: str | None = None) -> Response:
        media_type = _media_type(request.headers.get("accept"))
        if media_type is None:
            return _error(406, f"QIDO-RS answers in {DICOM_JSON} only")
        try:
            query = parse_qido_query(
                level,
                request.query_params.multi_items(),
                study_instance_uid=study,
                series_instance_uid=series,
                default_limit=default_limit,
                max_limit=max_limit,
            )
        except ValueError as exc:
            return _error(400, str(exc))
        result = queries.search(query)
        warnings = list(query.warnings)
        if result.more:
            warnings.append("There are additional results that can be requested")
        headers = {"Warning": ", ".join(f'299 {WARN_AGENT} "{w}"' for w in warnings)} if warnings else None
        if not result.matches:
            return Response(status_code=204, headers=headers)
        return JSONResponse(result.matches, media_type=media_type, headers=headers)

    @router.get("/studies", summary="Search for studies (QIDO-RS)")
    def search_for_studies(request: Request) -> Response:
        return respond(request, QidoLevel.STUDY)

    @router.get("/series", summary="Search for series (QIDO-RS)")
    def search_for_series(request: Request) -> Response:
        return respond(request, QidoLevel.SERIES)

    @router.get("/studies/{study}/series", summary="Search for a study's series (QIDO-RS)")
    def search_for_study_series(study: str, request: Request) -> Response:
        return respond(request, QidoLevel.SERIES, study)

    @router.get("/instances", summary="Search for instances (QIDO-RS)")
    def search_for_instances(request: Request) -> Response:
        return respond(request, QidoLevel.INSTANCE)

    @router.get("/studies/{study}/instances", summary="Search for a study's instances (QIDO-RS)")
    def search_for_study_instances(study: str, request: Request) -> Response:
        return respond(request, QidoLevel.INSTANCE, study)

    @router.get("/studies/{study}/series/{series}/instances", summary="Search for a series' instances (QIDO-RS)")
    def search_for_series_instances(study: str, series: str, request: Request) -> Response:
        return respond(request, QidoLevel.INSTANCE, study, series)

    return router
