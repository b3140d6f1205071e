"""Rendered resources (PS3.18 10.4.1.1.4, 8.3.5.1): one frame as 8-bit PNG or JPEG for thumbnails and previews,
after the Modality LUT (PS3.3 C.11.1), the VOI LUT or window (PS3.3 C.11.2) and, for MONOCHROME1, inversion
(PS3.3 C.7.6.3.1.2).

A requested :class:`Window` (the ``window`` query parameter, PS3.18 8.3.5.1.3) replaces the instance's own VOI
LUT or window: it applies to the output of the Modality LUT, in modality units (Hounsfield units for a CT), with
one of the VOI LUT Functions of PS3.3 C.11.2.1.2 and an output range of 0..255. Colour images have no VOI
transform (PS3.3 C.11.2 applies to grayscale), so a window leaves them as they are.

Compressed Pixel Data is decoded by pydicom's pixel data plugins: pylibjpeg with pylibjpeg-libjpeg
(JPEG baseline, extended, lossless, JPEG-LS) and pylibjpeg-openjpeg (JPEG 2000); RLE Lossless by
pydicom's own decoder.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

PNG = "image/png"
JPEG = "image/jpeg"
#: Rendered media types, the first being the default (PS3.18 Table 8.7.4-1 lists both as required).
RENDERED_MEDIA_TYPES = (PNG, JPEG)


class RenderError(ValueError):
    """The instance or frame cannot be rendered: its pixel data is missing or undecodable."""


class NotAnImageError(RenderError):
    """The instance has no image (Rows/Columns absent), e.g. a structured report."""


#: The VOI LUT Functions a requested window may name (PS3.18 8.3.5.1.3; PS3.3 C.11.2.1.2, C.11.2.1.3).
WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")


@dataclass(frozen=True, slots=True)
class Window:
    """A requested window: Window Center, Window Width and VOI LUT Function (PS3.18 8.3.5.1.3, PS3.3 C.11.2.1.2).

    The constructor validates: finite center and width, a known function, a width of at least 1 for ``linear``
    (C.11.2.1.2.1) and above 0 for ``linear-exact`` and ``sigmoid`` (C.11.2.1.3); it raises ``ValueError``.
    """

    center: float
    width: float
    function: str = "linear"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise ValueError("window center and width must be finite numbers")
        if self.function not in WINDOW_FUNCTIONS:
            raise ValueError(f"window function must be one of {', '.join(WINDOW_FUNCTIONS)}")
        if self.function == "linear" and self.width < 1:
            raise ValueError("a linear window needs a width of at least 1 (PS3.3 C.11.2.1.2.1)")
        if self.width <= 0:
            raise ValueError(f"a {self.function} window needs a width above 0 (PS3.3 C.11.2.1.3)")

    @classmethod
    def parse(cls, text: str) -> Window:
        """``center,width,function`` as the ``window`` parameter writes it (PS3.18 8.3.5.1.3)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValueError("window must be center,width,function, e.g. 40,80,linear")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError("window center and width must be numbers") from None
        return cls(center=center, width=width, function=parts[2].lower())


def apply_window(values: NDArray[Any], window: Window) -> NDArray[np.float64]:
    """Output values in 0..255 (ymin=0, ymax=255) of a window over modality values (PS3.3 C.11.2.1.2, C.11.2.1.3).

    * ``linear``: ymin for x <= c - 0.5 - (w-1)/2, ymax for x > c - 0.5 + (w-1)/2, else
      ((x - (c - 0.5)) / (w-1) + 0.5) * (ymax - ymin) + ymin;
    * ``linear-exact``: ymin for x <= c - w/2, ymax for x > c + w/2, else ((x - c) / w + 0.5) * (ymax - ymin) + ymin;
    * ``sigmoid``: (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin.
    """
    x = values.astype(np.float64)
    c, w = window.center, window.width
    if window.function == "sigmoid":
        result: NDArray[np.float64] = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -700.0, 700.0)))
        return result
    if window.function == "linear-exact":
        low, high = c - w / 2, c + w / 2
        y = ((x - c) / w + 0.5) * 255.0
    else:
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        # A width of 1 is a threshold: every value is then at one end or the other.
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.zeros_like(x)
    return np.where(x <= low, 0.0, np.where(x > high, 255.0, y))


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


def render_grayscale(arr: NDArray[Any], attrs: Dataset, *, window: Window | None = None) -> NDArray[Any]:
    """8-bit display values: Modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    ``window``, when given, replaces the instance's VOI LUT or window. Without any VOI LUT or window the full
    range of the frame's modality values is shown.
    """
    values = apply_modality_lut(arr, attrs)
    has_lut = bool(attrs.get("VOILUTSequence"))
    has_window = "WindowCenter" in attrs and "WindowWidth" in attrs
    if window is not None:
        out = apply_window(values, window)
        low, high = 0.0, 255.0
    elif has_lut or has_window:
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


def _has_pixel_data(data: bytes) -> bool:
    """Whether the Part 10 file holds Pixel Data, Float or Double Float Pixel Data (PS3.3 C.7.6.3)."""
    tags = (0x7FE00010, 0x7FE00008, 0x7FE00009)
    ds = pydicom.dcmread(io.BytesIO(data), specific_tags=list(tags))
    return any(tag in ds for tag in tags)


def render_frame(data: bytes, frame: int, *, window: Window | None = None) -> NDArray[Any]:
    """Frame ``frame`` (1-based) of a Part 10 file as 8-bit grey (H, W) or RGB (H, W, 3) values.

    ``window`` replaces a grayscale instance's own VOI (PS3.18 8.3.5.1.3); colour instances ignore it.

    Raises ``IndexError`` for a frame outside the instance, :class:`NotAnImageError` when it has no image (no
    Rows and Columns, or no Pixel Data) and :class:`RenderError` when its image cannot be decoded.
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
        if not _has_pixel_data(data):
            raise NotAnImageError("the instance has no Pixel Data") from exc
        raise RenderError(f"cannot decode the pixel data: {exc}") from exc
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 or str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        return render_color(arr, ds)
    return render_grayscale(arr, frame_pixel_attributes(ds, frame - 1), window=window)


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
