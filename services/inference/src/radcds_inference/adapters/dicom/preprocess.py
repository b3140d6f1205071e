"""Preprocessing a DICOM series into the INT16 tensor a model needs, once per series.

The grayscale pipeline of PS3.4 Annex N.2.1, as far as a model asks for it
(:class:`radcds_inference.domain.envelope.PreprocessingSpec`, from the model manifest):

1. Modality LUT (PS3.3 C.11.1; Rescale Slope/Intercept, or the enhanced Pixel Value
   Transformation, PS3.3 C.7.6.16.2.9): CT becomes Hounsfield units.
2. VOI LUT (PS3.3 C.11.2) only when the spec asks for it: the data set's VOI LUT Sequence or
   its first Window Center/Width, rescaled to 0..4095.
3. MONOCHROME1 (PS3.3 C.7.6.3.1.2) inverted as ``min + max - x``, so higher is brighter.
4. Resampling to the model's grid: an integer block mean so the longer side is at most
   ``max_size`` (0 keeps the native grid); the pixel spacing is scaled by the same factor.
5. Rounded and clipped to ``int16`` (the wire format: raw INT16, never float).

It also reads the attributes the model envelope looks at (:func:`series_attributes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from radcds_inference.adapters.dicom.pixels import _frame_modality_lut, modality_unit
from radcds_inference.domain.envelope import PreprocessingSpec, SeriesAttributes, patient_age_years

_INT16 = np.iinfo(np.int16)
#: Upper end of the range a VOI LUT output is rescaled to (12 bits).
VOI_OUTPUT_MAX = 4095


@dataclass(frozen=True)
class PreparedSeries:
    """A series ready for a model: ``pixels`` is ``[slices, rows, columns]`` C-contiguous int16.

    ``pixel_spacing_mm`` is (row, column) spacing of the *prepared* grid, None when the data set
    gives none (or gives 0). ``sop_instance_uids`` follows the slice order of ``pixels``.
    """

    pixels: npt.NDArray[np.int16]
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    unit: str
    sop_instance_uids: tuple[str, ...]
    downsampling_factor: int

    def spacing_vector(self) -> npt.NDArray[np.float32]:
        """(row, column) spacing as float32 for a ``PIXEL_SPACING`` input; 0 where unknown."""
        return np.array(self.pixel_spacing_mm or (0.0, 0.0), dtype=np.float32)


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """Row and column spacing in mm: Pixel Spacing (0028,0030), else Imager Pixel Spacing (0018,1164).

    Enhanced images carry it in the Pixel Measures functional group (PS3.3 C.7.6.16.2.1).
    A missing, malformed or non-positive value gives None (the spacing is unknown).
    """
    candidates = [ds.get("PixelSpacing"), ds.get("ImagerPixelSpacing")]
    for groups_keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if groups and groups[0].get("PixelMeasuresSequence"):
            candidates.append(groups[0].PixelMeasuresSequence[0].get("PixelSpacing"))
    for value in candidates:
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and column > 0 and math.isfinite(row) and math.isfinite(column):
            return row, column
    return None


def slice_thickness_mm(ds: Dataset) -> float | None:
    """Slice Thickness (0018,0050) in mm, or None when absent or not positive."""
    try:
        value = float(ds.get("SliceThickness"))
    except (TypeError, ValueError):
        return None
    return value if value > 0 and math.isfinite(value) else None


def series_attributes(ds: Dataset) -> SeriesAttributes:
    """The attributes a model envelope checks, from one instance of the series."""
    return SeriesAttributes(
        modality=str(ds.get("Modality", "") or ""),
        body_part=str(ds.get("BodyPartExamined", "") or ""),
        view_position=str(ds.get("ViewPosition", "") or ""),
        slice_thickness_mm=slice_thickness_mm(ds),
        patient_age_years=patient_age_years(
            str(ds.get("PatientAge", "") or ""),
            str(ds.get("PatientBirthDate", "") or ""),
            str(ds.get("StudyDate", "") or ds.get("SeriesDate", "") or ""),
        ),
    )


def prepare_frame(ds: Dataset, spec: PreprocessingSpec) -> tuple[npt.NDArray[np.int16], int]:
    """Steps 1 to 5 for the first frame of `ds`; returns the int16 frame and the downsampling factor.

    Raises:
        ValueError: no Pixel Data, not single-sample grayscale, or an image too elongated to
            downsample to ``spec.max_size``.
    """
    if "PixelData" not in ds:
        raise ValueError(f"Dataset has no Pixel Data (7FE0,0010) (SOP Class UID {ds.get('SOPClassUID', 'unknown')})")
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1))
    if samples_per_pixel != 1:
        raise ValueError(f"Only grayscale images are supported: Samples per Pixel (0028,0002) is {samples_per_pixel}")
    stored = pixel_array(ds, index=0)
    values = np.asarray(apply_modality_lut(stored, _frame_modality_lut(ds)), dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"Expected a 2-D frame, got an array of shape {values.shape}")
    if spec.voi_lut and ("VOILUTSequence" in ds or "WindowCenter" in ds):
        values = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        values = (values - low) * (VOI_OUTPUT_MAX / (high - low)) if high > low else np.zeros_like(values)
    if spec.invert_monochrome1 and str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        values = (values.min() + values.max()) - values
    factor = 1
    if spec.max_size:
        factor = max(1, math.ceil(max(values.shape) / spec.max_size))
    if factor > 1:
        rows, columns = values.shape[0] // factor, values.shape[1] // factor
        if rows == 0 or columns == 0:
            raise ValueError(f"Image of shape {values.shape} is too elongated to downsample by {factor}")
        values = values[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor).mean(axis=(1, 3))
    clipped = np.clip(np.rint(values), _INT16.min, _INT16.max)
    return np.ascontiguousarray(clipped, dtype=np.int16), factor


def _slice_position(ds: Dataset) -> tuple[float, int]:
    """Sort key: position along the slice normal (PS3.3 C.7.6.2.1.1), then Instance Number."""
    number = int(ds.get("InstanceNumber", 0) or 0)
    try:
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
        position = np.array([float(v) for v in ds.ImagePositionPatient])
    except (AttributeError, TypeError, ValueError):
        return float(number), number
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(normal, position)), number


def prepare_series(datasets: Sequence[Dataset], spec: PreprocessingSpec) -> PreparedSeries:
    """Prepare every instance of one series for a model, in slice order (done once per series).

    Raises:
        ValueError: empty series, instances of different shapes, or any :func:`prepare_frame` error.
    """
    if not datasets:
        raise ValueError("a series needs at least one instance")
    ordered = sorted(datasets, key=_slice_position)
    frames: list[npt.NDArray[np.int16]] = []
    factor = 1
    for ds in ordered:
        frame, factor = prepare_frame(ds, spec)
        if frames and frame.shape != frames[0].shape:
            raise ValueError(f"instances of one series differ in shape: {frames[0].shape} and {frame.shape}")
        frames.append(frame)
    first = ordered[0]
    spacing = pixel_spacing_mm(first)
    return PreparedSeries(
        pixels=np.ascontiguousarray(np.stack(frames)),
        pixel_spacing_mm=None if spacing is None else (spacing[0] * factor, spacing[1] * factor),
        slice_thickness_mm=slice_thickness_mm(first),
        unit=modality_unit(first),
        sop_instance_uids=tuple(str(ds.get("SOPInstanceUID", "")) for ds in ordered),
        downsampling_factor=factor,
    )
