"""WADO-RS routes (PS3.18 10.4): metadata, bulk data, frames and rendered resources under ``/dicom-web``.

Routes only translate HTTP: they negotiate the media type, call the use case or the query object and map the
result back. The DICOM JSON metadata (PS3.18 F.2) is :mod:`radcds_imaging.adapters.dicom_json`; frames
(PS3.18 10.4.1.1.3) are :mod:`radcds_imaging.adapters.frames`; rendering (PS3.18 8.3.5.1, PS3.3 C.11) is
:mod:`radcds_imaging.adapters.rendering`.

* Metadata (PS3.18 10.4.1.1.2): one DICOM JSON object per instance. Binary values larger than
  :data:`~radcds_imaging.adapters.dicom_json.BULK_DATA_THRESHOLD` bytes are not inlined: top-level ones get a
  ``BulkDataURI`` (served by the bulkdata route), nested ones are omitted, and Pixel Data is omitted (clients
  fetch rendered frames instead).
* Rendered resources take ``viewport``, ``quality`` and ``window=center,width,function`` (PS3.18 8.3.5.1.3):
  the window replaces the instance's VOI, in modality units after the Modality LUT (a CT brain window is
  ``40,80,linear``); a malformed one answers 400.
* The ``accept`` query parameter (PS3.18 8.3.3.1), when given, is used instead of the Accept header
  for frames and rendered resources: browsers and ``<img src>`` cannot set headers.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from radcds.adapters.dicomweb.multipart import build_related
from radcds_imaging.adapters.db.instances import InstanceQueries, InstanceRow
from radcds_imaging.adapters.dicom_json import bulk_data, metadata_of
from radcds_imaging.adapters.frames import (
    COMPRESSED_MEDIA_TYPES,
    OCTET_STREAM,
    FrameRequestError,
    NoFramesError,
    negotiate_frames,
    parse_frame_list,
    read_frames,
    stored_transfer_syntax,
)
from radcds_imaging.adapters.rendering import (
    RENDERED_MEDIA_TYPES,
    NotAnImageError,
    RenderError,
    Window,
    encode_image,
    render_frame,
)
from radcds_imaging.adapters.storage import InstanceStore
from radcds_imaging.handlers import ImagingService

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
#: Largest viewport side accepted, so that a request cannot ask for a huge image.
MAX_VIEWPORT = 4096
WINDOW_DESCRIPTION = "center,width,function (linear, linear-exact or sigmoid), in modality units: replaces the VOI"


def _error(status: int, message: str) -> JSONResponse:
    # PS3.18 8.6.3: errors carry a human readable explanation.
    return JSONResponse({"error": message}, status_code=status)


def negotiate_rendered(accept: str | None) -> str | None:
    """The rendered media type for an Accept header (PS3.18 8.7.4), or None when none fits."""
    if not accept or not accept.strip():
        return RENDERED_MEDIA_TYPES[0]
    best: tuple[float, int, str] | None = None
    for order, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if quality <= 0:
            continue
        if media in RENDERED_MEDIA_TYPES:
            chosen = media
        elif media in ("*/*", "image/*"):
            chosen = RENDERED_MEDIA_TYPES[0]
        else:
            continue
        if best is None or quality > best[0]:
            best = (quality, order, chosen)
    return None if best is None else best[2]


def parse_viewport(value: str | None) -> tuple[int, int] | None:
    """``viewport=vw,vh`` (PS3.18 8.3.5.1.3); ``ValueError`` when malformed or out of range."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 2:
        raise ValueError("viewport must be vw,vh")
    width, height = (int(p) for p in parts)
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise ValueError(f"viewport sides must lie in 1..{MAX_VIEWPORT}")
    return width, height


def parse_window(value: str | None) -> Window | None:
    """``window=center,width,function`` (PS3.18 8.3.5.1.3); ``ValueError`` when malformed or out of range."""
    if value is None:
        return None
    return Window.parse(value)


def _accept(request: Request, query_accept: str | None) -> str | None:
    """The ``accept`` query parameter if given (PS3.18 8.3.3.1), else the Accept header."""
    if query_accept is not None and query_accept.strip():
        return query_accept
    return request.headers.get("accept")


def _bulk_data_uri(prefix: str, tag: int) -> str:
    return f"{prefix}/{tag:08X}"


# --- routes ---------------------------------------------------------------------------------------


def wado_router(
    *, public_base_url: str, service: ImagingService, instances: InstanceQueries, store: InstanceStore
) -> APIRouter:
    """WADO-RS metadata, bulkdata, frames and rendered routes under ``/dicom-web``, over imaging's use case
    (instance retrieval), its instance queries and its instance store."""
    router = APIRouter(prefix="/dicom-web", tags=["DICOMweb"])
    base = public_base_url.rstrip("/")

    def _metadata(rows: list[InstanceRow]) -> Response:
        if not rows:
            return _error(404, "no instances found")
        body = []
        for row in rows:
            url = (
                f"{base}/dicom-web/studies/{row.study_instance_uid}/series/{row.series_instance_uid}"
                f"/instances/{row.sop_instance_uid}/bulkdata"
            )
            body.append(metadata_of(store.get(row.storage_key), bulk_data_uri=partial(_bulk_data_uri, url)))
        return JSONResponse(body, media_type=DICOM_JSON)

    @router.get("/studies/{study}/metadata")
    def retrieve_study_metadata(
        study: str,
    ) -> Response:
        return _metadata(instances.find(study=study))

    @router.get("/studies/{study}/series/{series}/metadata")
    def retrieve_series_metadata(
        study: str,
        series: str,
    ) -> Response:
        return _metadata(instances.find(study=study, series=series))

    @router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
    def retrieve_instance_metadata(
        study: str,
        series: str,
        instance: str,
    ) -> Response:
        rows = [r for r in instances.find(study=study, series=series) if r.sop_instance_uid == instance]
        return _metadata(rows)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}")
    def retrieve_bulk_data(
        study: str,
        series: str,
        instance: str,
        tag: str,
    ) -> Response:
        try:
            tag_value = int(tag, 16)
        except ValueError:
            return _error(400, "bulk data tag must be 8 hexadecimal digits")
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        value = bulk_data(data, tag_value)
        if value is None:
            return _error(404, "no bulk data at this tag")
        body, boundary = build_related([("application/octet-stream", value)])
        return Response(body, media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}')

    @router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
    def retrieve_frames(
        study: str,
        series: str,
        instance: str,
        frames: str,
        request: Request,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        try:
            numbers = parse_frame_list(frames)
        except FrameRequestError as exc:
            return _error(400, str(exc))
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        stored = stored_transfer_syntax(data)
        representation = negotiate_frames(_accept(request, accept), stored)
        if representation is None:
            offered = [f'multipart/related; type="{OCTET_STREAM}"'] + [
                f'multipart/related; type="{m}"' for m, syntaxes in COMPRESSED_MEDIA_TYPES.items() if stored in syntaxes
            ]
            return _error(406, f"frames of this instance are available as: {', '.join(offered)}")
        try:
            parts = read_frames(data, numbers, representation)
        except NoFramesError as exc:
            return _error(404, str(exc))
        except IndexError as exc:
            return _error(404, str(exc))
        except Exception as exc:  # pydicom raises several types for undecodable pixel data
            log.warning("frames not decodable", extra={"error_class": type(exc).__name__})
            return _error(406, "the stored frames cannot be decoded; ask for transfer-syntax=*")
        body, boundary = build_related([(representation.part_content_type, part) for part in parts])
        return Response(body, media_type=f'multipart/related; type="{representation.media_type}"; boundary={boundary}')

    def _rendered(
        request: Request,
        ids: tuple[str, str, str],
        frame_text: str,
        viewport_text: str | None,
        window_text: str | None,
        quality: int,
        accept: str | None,
    ) -> Response:
        media_type = negotiate_rendered(_accept(request, accept))
        if media_type is None:
            return _error(406, f"rendered resources are available as {', '.join(RENDERED_MEDIA_TYPES)}")
        try:
            frame = int(frame_text)
        except ValueError:
            return _error(400, "frame must be one 1-based frame number")
        if frame < 1:
            return _error(400, "frame numbers start at 1")
        try:
            viewport = parse_viewport(viewport_text)
        except ValueError as exc:
            return _error(400, f"invalid viewport: {exc}")
        try:
            window = parse_window(window_text)
        except ValueError as exc:
            return _error(400, f"invalid window: {exc}")
        if not 1 <= quality <= 100:
            return _error(400, "quality must lie in 1..100")
        study, series, instance = ids
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        try:
            pixels = render_frame(data, frame, window=window)
        except IndexError as exc:
            return _error(400, str(exc))
        except NotAnImageError as exc:
            return _error(400, str(exc))
        except RenderError as exc:
            return _error(500, str(exc))
        return Response(encode_image(pixels, media_type, viewport=viewport, quality=quality), media_type=media_type)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered")
    def retrieve_rendered_frame(
        study: str,
        series: str,
        instance: str,
        frame: str,
        request: Request,
        viewport: Annotated[str | None, Query(description="vw,vh: fit inside this size")] = None,
        window: Annotated[str | None, Query(description=WINDOW_DESCRIPTION)] = None,
        quality: Annotated[int, Query(description="JPEG quality 1..100")] = 90,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        return _rendered(request, (study, series, instance), frame, viewport, window, quality, accept)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
    def retrieve_rendered_instance(
        study: str,
        series: str,
        instance: str,
        request: Request,
        viewport: Annotated[str | None, Query(description="vw,vh: fit inside this size")] = None,
        window: Annotated[str | None, Query(description=WINDOW_DESCRIPTION)] = None,
        quality: Annotated[int, Query(description="JPEG quality 1..100")] = 90,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        # A thumbnail of a multi-frame instance shows its first frame.
        return _rendered(request, (study, series, instance), "1", viewport, window, quality, accept)

    return router
