"""Triton Python-backend model ``chest_ctr`` (version 1): cardiothoracic ratio on a chest radiograph.

NOT FOR DIAGNOSTIC USE. See ``../MODEL_CARD.md``.

:func:`measure_ctr` is the whole numerical core and needs only numpy and scipy, so this file can
be imported and tested without Triton; ``triton_python_backend_utils`` is imported lazily inside
:class:`TritonPythonModel`.

Method (Danzer's cardiothoracic ratio measured on lung-field masks):

1. Work grid: block-mean downsample so the longer side is at most :data:`WORK_SIZE`, Gaussian
   smoothing, and normalisation to the 1st..99th percentile.
2. Lung fields: pixels darker than their large-scale neighbourhood (a Gaussian background of
   sigma = rows / 10), cleaned by a binary opening; the largest component in each half of the
   image is a lung, holes (nodules, vessels) are filled and the outline is closed.
3. Thoracic width: the largest horizontal distance, on one row, between the lateral edges of the
   two lungs (the inner margin of the ribs).
4. Cardiac width: in the cardiac zone (rows from 60 % of the common lung height down to the
   higher lung base, where each lung is at least half its own maximal width) the heart borders
   are the medial edges of the lungs; cardiac width = most lateral medial edge of the image-right
   lung minus most lateral medial edge of the image-left lung (MRD + MLD: the midline cancels).
5. CTR = cardiac width / thoracic width.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

#: Longest side of the internal work grid, in pixels.
WORK_SIZE = 256
#: STATUS values.
STATUS_MEASURED = 0
STATUS_LUNGS_NOT_FOUND = 1
STATUS_NO_CARDIAC_ZONE = 2
#: Order of the values in the ``MEASUREMENTS`` output.
MEASUREMENT_NAMES = (
    "cardiothoracic_ratio",
    "cardiac_width_mm",
    "thoracic_width_mm",
    "cardiac_width_px",
    "thoracic_width_px",
)
#: Order of the values in the ``LOCATIONS`` output (rows and columns of the IMAGE grid).
LOCATION_NAMES = (
    "cardiac_image_left_border_row",
    "cardiac_image_left_border_column",
    "cardiac_image_right_border_row",
    "cardiac_image_right_border_column",
    "thoracic_row",
    "thoracic_image_left_column",
    "thoracic_image_right_column",
)
#: The cardiac zone starts this far down the common lung height (0 = apex, 1 = higher base).
CARDIAC_ZONE_START = 0.6
#: A lung component must cover at least this share of the work grid.
MIN_LUNG_FRACTION = 0.02
#: ... and span at least this share of the rows.
MIN_LUNG_HEIGHT_FRACTION = 0.25


@dataclass(frozen=True)
class CtrResult:
    """What :func:`measure_ctr` found; widths in IMAGE-grid pixels, positions as (row, column)."""

    status: int
    cardiac_width_px: float = math.nan
    thoracic_width_px: float = math.nan
    cardiac_left: tuple[int, int] = (-1, -1)
    cardiac_right: tuple[int, int] = (-1, -1)
    thoracic_row: int = -1
    thoracic_columns: tuple[int, int] = (-1, -1)
    right_lung: npt.NDArray[np.bool_] | None = None  # image-left lung, work grid
    left_lung: npt.NDArray[np.bool_] | None = None  # image-right lung, work grid
    factor: int = 1

    @property
    def ratio(self) -> float:
        """Cardiothoracic ratio, NaN when not measured."""
        return self.cardiac_width_px / self.thoracic_width_px if self.status == STATUS_MEASURED else math.nan

    def measurements(self, pixel_spacing: tuple[float, float]) -> npt.NDArray[np.float32]:
        """The ``MEASUREMENTS`` vector; mm values are NaN when the column spacing is unknown (<= 0)."""
        column_spacing = float(pixel_spacing[1])
        scale = column_spacing if column_spacing > 0 else math.nan
        return np.array(
            [
                self.ratio,
                self.cardiac_width_px * scale,
                self.thoracic_width_px * scale,
                self.cardiac_width_px,
                self.thoracic_width_px,
            ],
            dtype=np.float32,
        )

    def locations(self) -> npt.NDArray[np.int32]:
        """The ``LOCATIONS`` vector (-1 when not measured)."""
        return np.array(
            [*self.cardiac_left, *self.cardiac_right, self.thoracic_row, *self.thoracic_columns],
            dtype=np.int32,
        )


def work_grid(image: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], int]:
    """Block-mean downsample to at most :data:`WORK_SIZE`, smooth, normalise to 0..1 (P1..P99)."""
    values = np.asarray(image, dtype=np.float64)
    if values.ndim != 2 or min(values.shape) < 32:
        raise ValueError(f"IMAGE must be 2-D and at least 32 x 32, got {values.shape}")
    factor = max(1, math.ceil(max(values.shape) / WORK_SIZE))
    rows, columns = values.shape[0] // factor, values.shape[1] // factor
    small = values[: rows * factor, : columns * factor].reshape(rows, factor, columns, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, 1.5)
    low, high = np.percentile(small, [1.0, 99.0])
    if high <= low:
        return np.zeros_like(small), factor
    return np.clip((small - low) / (high - low), 0.0, 1.0), factor


def lung_fields(normalised: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None:
    """Return the (image-left, image-right) lung masks on the work grid, or None if not found."""
    rows, columns = normalised.shape
    background = ndimage.gaussian_filter(normalised, rows / 10.0)
    dark = ndimage.binary_opening(normalised < background, iterations=2)
    labels, count = ndimage.label(dark)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(dark, labels, index)
    centroids = ndimage.center_of_mass(dark, labels, index)
    slices = ndimage.find_objects(labels)
    best: dict[str, tuple[float, int]] = {}
    for label, size, centroid, box in zip(index, sizes, centroids, slices, strict=True):
        if box is None or size < MIN_LUNG_FRACTION * rows * columns:
            continue
        if box[0].stop - box[0].start < MIN_LUNG_HEIGHT_FRACTION * rows:
            continue
        side = "left" if centroid[1] < columns / 2.0 else "right"
        if side not in best or size > best[side][0]:
            best[side] = (float(size), int(label))
    if set(best) != {"left", "right"}:
        return None
    structure = ndimage.generate_binary_structure(2, 1)
    masks = []
    for side in ("left", "right"):
        mask = labels == best[side][1]
        mask = ndimage.binary_closing(mask, structure=structure, iterations=3, border_value=0)
        masks.append(ndimage.binary_fill_holes(mask))
    return masks[0], masks[1]


def measure_ctr(image: npt.ArrayLike) -> CtrResult:
    """Measure the cardiothoracic ratio on one chest radiograph (higher value = brighter).

    Raises:
        ValueError: if `image` is not 2-D or smaller than 32 x 32.
    """
    normalised, factor = work_grid(image)
    lungs = lung_fields(normalised)
    if lungs is None:
        return CtrResult(STATUS_LUNGS_NOT_FOUND, factor=factor)
    image_left, image_right = lungs
    rows_left = np.flatnonzero(image_left.any(axis=1))
    rows_right = np.flatnonzero(image_right.any(axis=1))
    # Thoracic width: lateral edges of both lungs on the same row.
    both = np.intersect1d(rows_left, rows_right)
    if both.size == 0:
        return CtrResult(STATUS_LUNGS_NOT_FOUND, right_lung=image_left, left_lung=image_right, factor=factor)
    lateral_left = np.array([np.flatnonzero(image_left[r]).min() for r in both])
    lateral_right = np.array([np.flatnonzero(image_right[r]).max() for r in both])
    spans = lateral_right - lateral_left + 1
    best = int(np.argmax(spans))
    thoracic_row = int(both[best])
    # Cardiac zone: the lower part of the common lung height, down to the higher lung base.
    top, bottom = max(rows_left[0], rows_right[0]), min(rows_left[-1], rows_right[-1])
    middle = top + math.ceil(CARDIAC_ZONE_START * (bottom - top))
    width_left = image_left.sum(axis=1)
    width_right = image_right.sum(axis=1)
    zone = [
        r
        for r in range(middle, bottom + 1)
        if width_left[r] >= 0.5 * width_left.max() and width_right[r] >= 0.5 * width_right.max()
    ]
    if not zone:
        return CtrResult(STATUS_NO_CARDIAC_ZONE, right_lung=image_left, left_lung=image_right, factor=factor)
    medial_left = np.array([np.flatnonzero(image_left[r]).max() for r in zone])
    medial_right = np.array([np.flatnonzero(image_right[r]).min() for r in zone])
    i_left, i_right = int(np.argmin(medial_left)), int(np.argmax(medial_right))
    # Heart borders lie just outside the lung: the first non-lung pixel medial to each lung.
    border_left_col = int(medial_left[i_left]) + 1
    border_right_col = int(medial_right[i_right]) - 1
    cardiac_px = (border_right_col - border_left_col + 1) * factor
    thoracic_px = int(spans[best]) * factor
    if cardiac_px <= 0:
        return CtrResult(STATUS_NO_CARDIAC_ZONE, right_lung=image_left, left_lung=image_right, factor=factor)

    def full(index: int) -> int:
        return index * factor + factor // 2

    return CtrResult(
        STATUS_MEASURED,
        cardiac_width_px=float(cardiac_px),
        thoracic_width_px=float(thoracic_px),
        cardiac_left=(full(zone[i_left]), full(border_left_col)),
        cardiac_right=(full(zone[i_right]), full(border_right_col)),
        thoracic_row=full(thoracic_row),
        thoracic_columns=(full(int(lateral_left[best])), full(int(lateral_right[best]))),
        right_lung=image_left,
        left_lung=image_right,
        factor=factor,
    )


class TritonPythonModel:
    """Triton Python backend entry point: STATUS, MEASUREMENTS and LOCATIONS per IMAGE."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Check that the loaded configuration matches what ``execute`` produces."""
        import json

        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        for name, dtype in (("STATUS", np.int32), ("MEASUREMENTS", np.float32), ("LOCATIONS", np.int32)):
            output = pb_utils.get_output_config_by_name(config, name)
            if output is None or pb_utils.triton_string_to_numpy(output["data_type"]) != dtype:
                raise ValueError(f"{name} must be configured as {np.dtype(dtype).name}")

    def execute(self, requests: list[Any]) -> list[Any]:
        """Measure every item of every request; errors stay per request."""
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
                spacings = pb_utils.get_input_tensor_by_name(request, "PIXEL_SPACING").as_numpy()
                if images.ndim != 3 or spacings.shape != (images.shape[0], 2):
                    raise ValueError(
                        f"IMAGE must be [batch, rows, columns] and PIXEL_SPACING [batch, 2], got "
                        f"{images.shape} and {spacings.shape}"
                    )
                results = [measure_ctr(image) for image in images]
                status = np.array([[r.status] for r in results], dtype=np.int32)
                measurements = np.stack(
                    [r.measurements((float(s[0]), float(s[1]))) for r, s in zip(results, spacings, strict=True)]
                )
                locations = np.stack([r.locations() for r in results])
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor("STATUS", status),
                            pb_utils.Tensor("MEASUREMENTS", measurements),
                            pb_utils.Tensor("LOCATIONS", locations),
                        ]
                    )
                )
            except ValueError as error:
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG),
                    )
                )
        return responses

    def finalize(self) -> None:
        """Nothing to release."""
