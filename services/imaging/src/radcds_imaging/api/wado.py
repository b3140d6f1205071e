"""WADO-RS metadata, bulk data and rendered resources (PS3.18 10.4).

* Metadata (PS3.18 10.4.1.1.2): DICOM JSON (PS3.18 F.2), one object per instance. Binary values
  larger than :data:`BULK_DATA_THRESHOLD` bytes are not inlined: top-level ones get a ``BulkDataURI``
  (served by the bulkdata route), nested ones are omitted, and Pixel Data is omitted (clients fetch
  rendered frames instead).
* Frames (PS3.18 10.4.1.1.3): see :mod:`radcds_imaging.adapters.frames`.
* Rendered (PS3.18 10.4.1.1.4, 8.3.5.1): one frame as PNG or JPEG for thumbnails and previews,
  after the Modality LUT (PS3.3 C.11.1), the VOI LUT or window (PS3.3 C.11.2) and, for MONOCHROME1,
  inversion (PS3.3 C.7.6.3.1.2).
* The ``accept`` query parameter (PS3.18 8.3.3.1), when given, is used instead of the Accept header
  for frames and rendered resources: browsers and ``<img src>`` cannot set headers.

Compressed Pixel Data is decoded by pydicom's pixel data plugins: pylibjpeg with pylibjpeg-libjpeg
(JPEG baseline, extended, lossless, JPEG-LS) and pylibjpeg-openjpeg (JPEG 2000); RLE Lossless by
pydicom's own decoder.

Routes read ``request.app.state.engine`` (the database), ``request.app.state.instance_store`` (the
:class:`~radcds_imaging.adapters.storage.InstanceStore`) and ``request.app.state.imaging`` (the
:class:`~radcds_imaging.handlers.ImagingService`).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import numpy as np
import pydicom
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array
from sqlalchemy import Engine, select

from radcds.adapters.db.tables import dicom_instances
from radcds.adapters.dicomweb.multipart import build_related
from radcds_imaging.adapters.frames import (
    COMPRESSED_MEDIA_TYPES,
    OCTET_STREAM,
    FrameRequestError,
    NoFramesError,
    negotiate_frames,
    parse_frame_list,
    read_frames,
)
from radcds_imaging.adapters.storage import InstanceStore
from radcds_imaging.handlers import ImagingService

log = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
PNG = "image/png"
JPEG = "image/jpeg"
#: Rendered media types, the first being the default (PS3.18 Table 8.7.4-1 lists both as required).
RENDERED_MEDIA_TYPES = (PNG, JPEG)
#: Binary values longer than this many bytes leave the metadata as BulkDataURI (PS3.18 F.2.7).
BULK_DATA_THRESHOLD = 1024
#: Largest viewport side accepted, so that a request cannot ask for a huge image.
MAX_VIEWPORT = 4096
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_OMITTED = "urn:radcds:omitted-bulk-data"
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def _service(request: Request) -> ImagingService:
    return request.app.state.imaging  # type: ignore[no-any-return]


def _engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _store(request: Request) -> InstanceStore:
    return request.app.state.instance_store  # type: ignore[no-any-return]


ServiceDep = Annotated[ImagingService, Depends(_service)]
EngineDep = Annotated[Engine, Depends(_engine)]
StoreDep = Annotated[InstanceStore, Depends(_store)]


def _error(status: int, message: str) -> JSONResponse:
    # PS3.18 8.6.3: errors carry a human readable explanation.
    return JSONResponse({"error": message}, status_code=status)


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """Where one stored instance sits in the hierarchy and in the store."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    storage_key: str


def find_instances(*, engine: Engine, study: str, series: str | None = None) -> list[InstanceRow]:
    """Stored instances of a study (or of one series of it), ordered by series and instance UID."""
    query = select(
        dicom_instances.c.study_instance_uid,
        dicom_instances.c.series_instance_uid,
        dicom_instances.c.sop_instance_uid,
        dicom_instances.c.storage_key,
    ).where(dicom_instances.c.study_instance_uid == study)
    if series is not None:
        query = query.where(dicom_instances.c.series_instance_uid == series)
    query = query.order_by(dicom_instances.c.series_instance_uid, dicom_instances.c.sop_instance_uid)
    with engine.connect() as conn:
        return [InstanceRow(*row) for row in conn.execute(query)]


# --- metadata (PS3.18 10.4.1.1.2, F.2) ---------------------------------------------------------------


def instance_metadata(ds: Dataset, *, bulk_data_uri: Callable[[int], str]) -> dict[str, Any]:
    """DICOM JSON of one instance; large top-level binary values become ``BulkDataURI`` (PS3.18 F.2.7).

    Pixel Data and large binary values nested in sequences are omitted.
    """

    def handler(elem: DataElement) -> str:
        top_level = elem.tag in ds and ds[elem.tag] is elem
        if not top_level or int(elem.tag) in PIXEL_DATA_TAGS:
            return _OMITTED
        return bulk_data_uri(int(elem.tag))

    result = ds.to_json_dict(
        bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=handler, suppress_invalid_tags=True
    )
    _strip_omitted(result)
    return result


def _strip_omitted(obj: dict[str, Any]) -> None:
    for tag in list(obj):
        attr = obj[tag]
        if attr.get("BulkDataURI") == _OMITTED or int(tag, 16) in PIXEL_DATA_TAGS:
            del obj[tag]
        elif attr.get("vr") == "SQ":
            for item in attr.get("Value", []):
                _strip_omitted(item)


# --- rendering (PS3.18 8.3.5.1, PS3.3 C.11) ------------------------------------------------------


class RenderError(ValueError):
    """The instance or frame cannot be rendered: its pixel data is missing or undecodable."""


class NotAnImageError(RenderError):
    """The instance has no image (Rows/Columns absent), e.g. a structured report."""


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames (PS3.3 C.7.6.6), 1 for single-frame images."""
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


_PIXEL_TRANSFORM_KEYWORDS = (
    "BitsStored",
    "PixelRepresentation",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)
# Functional groups of multi-frame images that carry rescale and window (PS3.3 C.7.6.16.2.9, .10).
_FRAME_GROUP_SEQUENCES = ("PixelValueTransformationSequence", "FrameVOILUTSequence")


def frame_pixel_attributes(ds: Dataset, index: int) -> Dataset:
    """The rescale and VOI attributes that apply to frame ``index`` (0-based).

    Top-level attributes are overridden by the Shared, then the Per-frame Functional Groups
    (PS3.3 C.7.6.16), so that enhanced multi-frame images window like single-frame ones.
    """
    view = Dataset()
    for keyword in _PIXEL_TRANSFORM_KEYWORDS:
        if keyword in ds:
            view.add(ds[keyword])
    groups: list[Dataset] = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:
        for seq_keyword in _FRAME_GROUP_SEQUENCES:
            seq = group.get(seq_keyword)
            if seq:
                for elem in seq[0]:
                    if elem.keyword in _PIXEL_TRANSFORM_KEYWORDS:
                        view.add(elem)
    return view


def _to_uint8(values: NDArray[Any], low: float, high: float) -> NDArray[Any]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (high - low))
    result: NDArray[np.uint8] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return result


def render_grayscale(arr: NDArray[Any], attrs: Dataset) -> NDArray[Any]:
    """8-bit display values: Modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    Without a VOI LUT or window the full range of the frame's modality values is shown.
    """
    values = apply_modality_lut(arr, attrs)
    has_lut = bool(attrs.get("VOILUTSequence"))
    has_window = "WindowCenter" in attrs and "WindowWidth" in attrs
    if has_lut or has_window:
        if has_lut and values.dtype.kind == "f":
            values = np.rint(values).astype(np.int64)
        out = apply_voi_lut(values, attrs, index=0)
        # The VOI output range: windowing and LUTs are monotonic, so probe with extreme inputs.
        probe = apply_voi_lut(np.array([-(2**40), 2**40], dtype=np.int64), attrs, index=0)
        low, high = float(np.min(probe)), float(np.max(probe))
    else:
        out = values
        low, high = float(np.min(values)), float(np.max(values))
    pixels = _to_uint8(out, low, high)
    if str(attrs.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels


def render_color(arr: NDArray[Any], ds: Dataset) -> NDArray[Any]:
    """8-bit RGB: palette colour through its LUTs (PS3.3 C.7.9); RGB (pydicom converts YBR) rescaled."""
    if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return _to_uint8(rgb, 0, 2**bits - 1)
    if arr.dtype == np.uint8:
        return arr
    bits = int(ds.get("BitsStored", 8) or 8)
    return _to_uint8(arr, 0, 2**bits - 1)


def render_frame(data: bytes, frame: int) -> NDArray[Any]:
    """Frame ``frame`` (1-based) of a Part 10 file as 8-bit grey (H, W) or RGB (H, W, 3) values.

    Raises ``IndexError`` for a frame outside the instance and :class:`RenderError` when the
    instance has no decodable image.
    """
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    if "Rows" not in ds or "Columns" not in ds:
        raise NotAnImageError("the instance has no image")
    frames = number_of_frames(ds)
    if not 1 <= frame <= frames:
        raise IndexError(f"frame {frame} outside 1..{frames}")
    try:
        # Reads and decodes just this frame; YBR colour comes back as RGB.
        arr = pixel_array(io.BytesIO(data), index=frame - 1)
    except Exception as exc:  # pydicom raises several types for missing or undecodable data
        raise RenderError(f"cannot decode the pixel data: {exc}") from exc
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        return render_color(arr, ds)
    return render_grayscale(arr, frame_pixel_attributes(ds, frame - 1))


def fit_viewport(size: tuple[int, int], viewport: tuple[int, int]) -> tuple[int, int]:
    """Largest (width, height) inside the viewport with the aspect ratio of ``size``."""
    width, height = size
    scale = min(viewport[0] / width, viewport[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_image(pixels: NDArray[Any], media_type: str, *, viewport: tuple[int, int] | None, quality: int) -> bytes:
    """PNG or JPEG bytes of 8-bit pixels, scaled to fit ``viewport`` if given."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if viewport is not None:
        target = fit_viewport(image.size, viewport)
        if target != image.size:
            image = image.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if media_type == JPEG:
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


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


def _accept(request: Request, query_accept: str | None) -> str | None:
    """The ``accept`` query parameter if given (PS3.18 8.3.3.1), else the Accept header."""
    if query_accept is not None and query_accept.strip():
        return query_accept
    return request.headers.get("accept")


def _bulk_data_uri(prefix: str, tag: int) -> str:
    return f"{prefix}/{tag:08X}"


# --- routes ---------------------------------------------------------------------------------------


def wado_router(*, public_base_url: str) -> APIRouter:
    """WADO-RS metadata, bulkdata and rendered routes under ``/dicom-web``."""
    router = APIRouter(prefix="/dicom-web", tags=["DICOMweb"])
    base = public_base_url.rstrip("/")

    def _metadata(rows: list[InstanceRow], store: InstanceStore) -> Response:
        if not rows:
            return _error(404, "no instances found")
        body = []
        for row in rows:
            ds = pydicom.dcmread(io.BytesIO(store.get(row.storage_key)), stop_before_pixels=True)
            url = (
                f"{base}/dicom-web/studies/{row.study_instance_uid}/series/{row.series_instance_uid}"
                f"/instances/{row.sop_instance_uid}/bulkdata"
            )
            body.append(instance_metadata(ds, bulk_data_uri=partial(_bulk_data_uri, url)))
        return JSONResponse(body, media_type=DICOM_JSON)

    @router.get("/studies/{study}/metadata")
    def retrieve_study_metadata(study: str, engine: EngineDep, store: StoreDep) -> Response:
        return _metadata(find_instances(engine=engine, study=study), store)

    @router.get("/studies/{study}/series/{series}/metadata")
    def retrieve_series_metadata(study: str, series: str, engine: EngineDep, store: StoreDep) -> Response:
        return _metadata(find_instances(engine=engine, study=study, series=series), store)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
    def retrieve_instance_metadata(
        study: str, series: str, instance: str, engine: EngineDep, store: StoreDep
    ) -> Response:
        rows = [r for r in find_instances(engine=engine, study=study, series=series) if r.sop_instance_uid == instance]
        return _metadata(rows, store)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}")
    def retrieve_bulk_data(study: str, series: str, instance: str, tag: str, service: ServiceDep) -> Response:
        try:
            tag_value = int(tag, 16)
        except ValueError:
            return _error(400, "bulk data tag must be 8 hexadecimal digits")
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        elem = ds.get(tag_value) if tag_value not in PIXEL_DATA_TAGS else None
        if elem is None or elem.VR not in _BINARY_VRS or not isinstance(elem.value, bytes):
            return _error(404, "no bulk data at this tag")
        body, boundary = build_related([("application/octet-stream", elem.value)])
        return Response(body, media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}')

    @router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}")
    def retrieve_frames(
        study: str,
        series: str,
        instance: str,
        frames: str,
        request: Request,
        service: ServiceDep,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        try:
            numbers = parse_frame_list(frames)
        except FrameRequestError as exc:
            return _error(400, str(exc))
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        stored = str(meta.file_meta.get("TransferSyntaxUID", ""))
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
        service: ImagingService,
        ids: tuple[str, str, str],
        frame_text: str,
        viewport_text: str | None,
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
        if not 1 <= quality <= 100:
            return _error(400, "quality must lie in 1..100")
        study, series, instance = ids
        data = service.retrieve_instance(study=study, series=series, instance=instance)
        if data is None:
            return _error(404, "instance not found")
        try:
            pixels = render_frame(data, frame)
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
        service: ServiceDep,
        viewport: Annotated[str | None, Query(description="vw,vh: fit inside this size")] = None,
        quality: Annotated[int, Query(description="JPEG quality 1..100")] = 90,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        return _rendered(request, service, (study, series, instance), frame, viewport, quality, accept)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
    def retrieve_rendered_instance(
        study: str,
        series: str,
        instance: str,
        request: Request,
        service: ServiceDep,
        viewport: Annotated[str | None, Query(description="vw,vh: fit inside this size")] = None,
        quality: Annotated[int, Query(description="JPEG quality 1..100")] = 90,
        accept: Annotated[str | None, Query(description="media types, used instead of the Accept header")] = None,
    ) -> Response:
        # A thumbnail of a multi-frame instance shows its first frame.
        return _rendered(request, service, (study, series, instance), "1", viewport, quality, accept)

    return router
