"""Pixel preparation for inference: DICOM Pixel Data to a small 2-D ``int16`` image.

The steps follow the DICOM grayscale pipeline (PS3.4 Annex N.2.1) up to, but not including,
the VOI LUT: the Modality LUT Module (PS3.3 C.11.1) maps stored values to modality units
(Hounsfield units for CT, PS3.3 C.8.2.1), and Photometric Interpretation (PS3.3 C.7.6.3.1.2)
tells whether the minimum value is white (MONOCHROME1) or black (MONOCHROME2). No windowing is
applied: the model sees modality values.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from radcds.domain.codes import UNIT_HOUNSFIELD, UNIT_PIXEL_VALUE

_INT16 = np.iinfo(np.int16)
_RESCALE_KEYWORDS = ("RescaleIntercept", "RescaleSlope", "RescaleType")


def _frame_modality_lut(ds: Dataset) -> Dataset:
    """Return the dataset that carries the Modality LUT for the first frame.

    Legacy images carry the Modality LUT Module (PS3.3 C.11.1) at the top level. Enhanced
    multi-frame images (e.g. Enhanced CT) carry it in the Pixel Value Transformation Functional
    Group (PS3.3 C.7.6.16.2.9), either per frame or shared; the per-frame item wins.
    """
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds:
        return ds
    for groups_keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if not groups:
            continue
        transformations = groups[0].get("PixelValueTransformationSequence")
        if not transformations:
            continue
        item = transformations[0]
        if "RescaleSlope" in item and "RescaleIntercept" in item:
            lut = Dataset()
            for keyword in _RESCALE_KEYWORDS:
                if keyword in item:
                    setattr(lut, keyword, item[keyword].value)
            return lut
    return ds


def prepare_image(ds: Dataset, *, max_size: int = 512) -> npt.NDArray[np.int16]:
    """Return the first frame of `ds` as a 2-D C-contiguous ``int16`` array in modality units.

    Steps, in order:

    1. Decode only the first frame of a multi-frame image.
    2. Apply the Modality LUT (PS3.3 C.11.1) with :func:`pydicom.pixels.apply_modality_lut`, so
       CT values are Hounsfield units. For enhanced multi-frame images the first frame's Pixel
       Value Transformation (PS3.3 C.7.6.16.2.9) is used.
    3. For Photometric Interpretation MONOCHROME1 (PS3.3 C.7.6.3.1.2: the minimum value is
       displayed white) invert as ``min + max - x`` over the frame, so that higher means
       brighter as in MONOCHROME2.
    4. Downsample by an integer block mean so that the longer side is at most `max_size`,
       cropping the rows and columns that do not fill a whole block.
    5. Round half to even and clip to the ``int16`` range.

    Pixel Padding Value (PS3.3 C.7.5.1.1.2) is not masked: padding stays in the image.

    Raises:
        ValueError: if `ds` has no Pixel Data, is not single-sample grayscale
            (Samples per Pixel != 1, PS3.3 C.7.6.3.1.1), or cannot be downsampled to `max_size`.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    if "PixelData" not in ds:
        raise ValueError(
            "Dataset has no Pixel Data (7FE0,0010); only image instances can be prepared "
            f"(SOP Class UID {ds.get('SOPClassUID', 'unknown')})"
        )
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1))
    if samples_per_pixel != 1:
        raise ValueError(
            f"Only grayscale images are supported: Samples per Pixel (0028,0002) is "
            f"{samples_per_pixel} with Photometric Interpretation "
            f"{ds.get('PhotometricInterpretation', 'unknown')}"
        )

    stored = pixel_array(ds, index=0)
    values = np.asarray(apply_modality_lut(stored, _frame_modality_lut(ds)), dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"Expected a 2-D frame, got an array of shape {values.shape}")

    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        values = (values.min() + values.max()) - values

    factor = math.ceil(max(values.shape) / max_size)
    if factor > 1:
        rows, columns = values.shape[0] // factor, values.shape[1] // factor
        if rows == 0 or columns == 0:
            raise ValueError(
                f"Image of shape {values.shape} is too elongated to downsample by an integer "
                f"factor {factor} to a longer side of at most {max_size}"
            )
        values = values[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor).mean(axis=(1, 3))

    clipped = np.clip(np.rint(values), _INT16.min, _INT16.max)
    return np.ascontiguousarray(clipped, dtype=np.int16)


def modality_unit(ds: Dataset) -> str:
    """Return the UCUM unit of :func:`prepare_image`'s output for `ds`.

    CT with a rescale to Hounsfield units gives ``[hnsf'U]``: in the CT Image Module
    (PS3.3 C.8.2.1) the output of Rescale Slope/Intercept is HU when Rescale Type (0028,1054) is
    absent or ``HU``. Everything else, including CT with Rescale Type ``US`` (unspecified),
    gives the arbitrary unit ``{pixel_value}``.
    """
    if str(ds.get("Modality", "")).strip() != "CT":
        return UNIT_PIXEL_VALUE
    lut = _frame_modality_lut(ds)
    if "RescaleSlope" not in lut or "RescaleIntercept" not in lut:
        return UNIT_PIXEL_VALUE
    rescale_type = str(lut.get("RescaleType", "HU") or "HU").strip().upper()
    return UNIT_HOUNSFIELD if rescale_type == "HU" else UNIT_PIXEL_VALUE
