"""DICOMweb routes (PS3.18): STOW-RS store and WADO-RS instance retrieval.

Routes only translate HTTP to the :class:`~radcds_imaging.handlers.ImagingService` and back.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from radcds.adapters.dicomweb.multipart import MultipartError, build_related, parse_content_type, split_parts
from radcds_imaging.handlers import FailedInstance, ImagingService, StoreOutcome

DICOM_JSON = "application/dicom+json"


def _error(status: int, message: str) -> JSONResponse:
    # PS3.18 8.6.3: errors carry a human readable explanation; DICOM JSON has no error model.
    return JSONResponse({"error": message}, status_code=status)


def _store_response(outcome: StoreOutcome, base_url: str, study: str | None) -> JSONResponse:
    """PS3.18 Table 10.5.3-1: 200 all stored, 202 some failed, 409 none stored."""
    body: dict[str, Any] = {}
    if study:
        body["00081190"] = {"vr": "UR", "Value": [f"{base_url}/dicom-web/studies/{study}"]}
    if outcome.stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [s.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [s.sop_instance_uid]},
                    "00081190": {"vr": "UR", "Value": [s.retrieve_url]},
                }
                for s in outcome.stored
            ],
        }
    if outcome.failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed_item(f) for f in outcome.failed]}
    status = 200 if not outcome.failed else (202 if outcome.stored else 409)
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON)


def _failed_item(f: FailedInstance) -> dict[str, Any]:
    item: dict[str, Any] = {"00081197": {"vr": "US", "Value": [f.reason]}}
    if f.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [f.sop_class_uid]}
    if f.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [f.sop_instance_uid]}
    return item


def dicomweb_router(*, service: ImagingService, max_request_bytes: int, public_base_url: str) -> APIRouter:
    """STOW-RS and WADO-RS instance routes under ``/dicom-web``, over imaging's store and retrieve use cases."""
    router = APIRouter(prefix="/dicom-web", tags=["DICOMweb"])

    async def _store(request: Request, study: str | None) -> Response:
        media, params = parse_content_type(request.headers.get("content-type", ""))
        if media != "multipart/related":
            return _error(415, 'STOW-RS needs Content-Type multipart/related; type="application/dicom"')
        if params.get("type", "application/dicom").lower() != "application/dicom":
            return _error(415, f"unsupported multipart type {params.get('type')!r}: only application/dicom")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            return _error(413, f"request larger than {max_request_bytes} bytes")
        chunks: list[bytes] = []  # joined once: growing one buffer and copying it out cost two more copies
        received = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            received += len(chunk)
            if received > max_request_bytes:
                return _error(413, f"request larger than {max_request_bytes} bytes")
        try:
            parts = split_parts(b"".join(chunks), params.get("boundary", ""))
        except MultipartError as exc:
            return _error(400, str(exc))
        wrong = [p.content_type for p in parts if p.content_type not in ("application/dicom", "")]
        if wrong:
            return _error(415, f"body part of type {wrong[0]!r}: only application/dicom is accepted")
        from starlette.concurrency import run_in_threadpool

        outcome = await run_in_threadpool(
            service.store_instances, parts=[p.content for p in parts], study_instance_uid=study
        )
        return _store_response(outcome, public_base_url.rstrip("/"), study)

    @router.post("/studies")
    async def store_instances(request: Request) -> Response:
        return await _store(request, None)

    @router.post("/studies/{study}")
    async def store_study_instances(study: str, request: Request) -> Response:
        return await _store(request, study)

    @router.get("/studies/{study}/series/{series}/instances/{instance}")
    def retrieve_instance(study: str, series: str, instance: str) -> Response:
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        body, boundary = build_related([("application/dicom", data)])
        return Response(body, media_type=f'multipart/related; type="application/dicom"; boundary={boundary}')

    return router
