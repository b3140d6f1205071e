"""Triton Python-backend model ``head_ct_hyperdensity`` (version 1): acute-blood-density regions on head CT.

NOT FOR DIAGNOSTIC USE. See ``../MODEL_CARD.md``.

:func:`find_hyperdensities` is the whole numerical core and needs only numpy and scipy, so this
file can be imported and tested without Triton; ``triton_python_backend_utils`` is imported
lazily inside :class:`TritonPythonModel`.

Method, per axial slice in Hounsfield units (the caller applied the Modality LUT):

1. Intracranial mask: bone is > :data:`BONE_HU`; holes of the bone mask are filled and the
   largest non-bone component inside the skull is kept, then eroded by ``brain_erosion_mm`` with
   a Euclidean distance transform (partial volume with the inner table).
2. Candidates: a 3 x 3 mean of the HU image between :data:`BLOOD_LOW_HU` and :data:`BLOOD_HIGH_HU`
   inside the eroded mask, 8-connected, at least ``min_region_area_mm2``.
3. Artifact rejection: a candidate whose surrounding ring (``ring_mm`` wide) holds more than
   ``max_ring_outlier_fraction`` of voxels below 0 HU or above 100 HU (smoothed) lies next to
   bone, air, fat or streak/ringing artifact rather than in brain parenchyma, and is rejected.
4. Report count, total area (mm2), volume (area x slice thickness, mm3), largest area, max and
   mean HU of the raw voxels, and the centroid (row, column) of the largest region.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BONE_HU = 300.0
BLOOD_LOW_HU = 50.0
BLOOD_HIGH_HU = 90.0
#: Smoothed HU outside this range in the ring around a candidate counts as an outlier.
RING_LOW_HU = 0.0
RING_HIGH_HU = 100.0
#: The intracranial component must cover at least this area to be a brain slice.
MIN_BRAIN_AREA_MM2 = 2000.0

STATUS_MEASURED = 0
STATUS_NO_BRAIN = 1
#: Order of the values in the ``MEASUREMENTS`` output.
MEASUREMENT_NAMES = (
    "region_count",
    "total_area_mm2",
    "total_volume_mm3",
    "largest_region_area_mm2",
    "max_hu",
    "mean_hu",
    "brain_area_mm2",
    "rejected_region_count",
)
#: Most vertices of the largest region's outline in the ``LOCATIONS`` output.
MAX_OUTLINE_POINTS = 16
#: Order of the values in the ``LOCATIONS`` output (all -1 when no region was found; unused outline slots -1).
LOCATION_NAMES = (
    "largest_region_centroid_row",
    "largest_region_centroid_column",
    "largest_region_min_row",
    "largest_region_min_column",
    "largest_region_max_row",
    "largest_region_max_column",
    *(f"largest_region_outline_{i}_{axis}" for i in range(MAX_OUTLINE_POINTS) for axis in ("row", "column")),
)


@dataclass(frozen=True)
class Parameters:
    """Settable parameters (Triton ``parameters`` in config.pbtxt override the defaults)."""

    min_region_area_mm2: float = 20.0
    brain_erosion_mm: float = 5.0
    ring_mm: float = 5.0
    max_ring_outlier_fraction: float = 0.05

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Parameters":
        """Read the model configuration's ``parameters`` (string values) over the defaults."""
        values = {}
        for name in cls.__dataclass_fields__:
            entry = config.get("parameters", {}).get(name)
            if entry is not None:
                values[name] = float(entry["string_value"])
        return cls(**values)


@dataclass(frozen=True)
class HyperdensityResult:
    """What :func:`find_hyperdensities` found on one slice."""

    status: int
    region_count: int = 0
    total_area_mm2: float = 0.0
    total_volume_mm3: float = 0.0
    largest_region_area_mm2: float = 0.0
    max_hu: float = math.nan
    mean_hu: float = math.nan
    brain_area_mm2: float = 0.0
    rejected_region_count: int = 0
    centroid: tuple[int, int] = (-1, -1)
    bounding_box: tuple[int, int, int, int] = (-1, -1, -1, -1)
    outline: tuple[tuple[int, int], ...] = ()
    regions: npt.NDArray[np.bool_] | None = field(default=None, repr=False)
    brain: npt.NDArray[np.bool_] | None = field(default=None, repr=False)

    def measurements(self) -> npt.NDArray[np.float32]:
        """The ``MEASUREMENTS`` vector (max/mean HU are NaN when no region was found)."""
        return np.array(
            [
                self.region_count,
                self.total_area_mm2,
                self.total_volume_mm3,
                self.largest_region_area_mm2,
                self.max_hu,
                self.mean_hu,
                self.brain_area_mm2,
                self.rejected_region_count,
            ],
            dtype=np.float32,
        )

    def locations(self) -> npt.NDArray[np.int32]:
        """The ``LOCATIONS`` vector (:data:`LOCATION_NAMES`; -1 when no region was found or a slot is unused)."""
        outline = [v for point in self.outline[:MAX_OUTLINE_POINTS] for v in point]
        padding = [-1] * (2 * MAX_OUTLINE_POINTS - len(outline))
        return np.array([*self.centroid, *self.bounding_box, *outline, *padding], dtype=np.int32)


def _cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
    """z of (a - o) x (b - o) with column as x and row as y."""
    return (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1])


def convex_hull(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Convex hull of (row, column) points (Andrew's monotone chain), without collinear vertices.

    The vertices go clockwise as displayed (rows down, columns right), starting from the top-most,
    then left-most one.
    """
    unique = sorted(set(points), key=lambda p: (p[1], p[0]))
    if len(unique) <= 2:
        return sorted(unique)
    lower: list[tuple[int, int]] = []
    for p in unique:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[int, int]] = []
    for p in reversed(unique):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    start = hull.index(min(hull))
    return hull[start:] + hull[:start]


def _triangle_area(a: tuple[int, int], b: tuple[int, int], c: tuple[int, int]) -> float:
    return abs(_cross(a, b, c)) / 2.0


def reduce_polygon(vertices: list[tuple[int, int]], max_points: int) -> list[tuple[int, int]]:
    """At most ``max_points`` of a closed polygon's vertices, in the same order (Visvalingam-Whyatt).

    The vertex whose triangle with its two neighbours is smallest is dropped until few enough remain,
    so the outline loses the least area at each step; the first vertex is kept.
    """
    kept = list(vertices)
    while len(kept) > max(max_points, 3):
        n = len(kept)
        drop = min(range(1, n), key=lambda i: _triangle_area(kept[i - 1], kept[i], kept[(i + 1) % n]))
        del kept[drop]
    return kept


def region_outline(region: npt.NDArray[np.bool_], max_points: int = MAX_OUTLINE_POINTS) -> tuple[tuple[int, int], ...]:
    """The outline of a region: the convex hull of its pixel centres, reduced to ``max_points`` vertices.

    Only the first and last pixel of each row can be hull vertices, so only those are hulled.
    """
    rows, columns = np.nonzero(region)
    if rows.size == 0:
        return ()
    starts = np.flatnonzero(np.r_[True, np.diff(rows) != 0])
    ends = np.r_[starts[1:], rows.size] - 1
    extremes = [(int(rows[i]), int(columns[i])) for i in (*starts, *ends)]
    return tuple(reduce_polygon(convex_hull(extremes), max_points))


def bounding_box(region: npt.NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """(min row, min column, max row, max column) of a region's pixels, inclusive."""
    rows, columns = np.nonzero(region)
    return int(rows.min()), int(columns.min()), int(rows.max()), int(columns.max())


def intracranial_mask(hu: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Largest non-bone component enclosed by bone (> :data:`BONE_HU`), before erosion."""
    bone = hu > BONE_HU
    inside = ndimage.binary_fill_holes(bone) & ~bone
    labels, count = ndimage.label(inside)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = ndimage.sum_labels(inside, labels, np.arange(1, count + 1))
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def find_hyperdensities(
    image: npt.ArrayLike,
    spacing: tuple[float, float, float],
    parameters: Parameters = Parameters(),
) -> HyperdensityResult:
    """Find acute-blood-density regions on one axial head CT slice in HU.

    `spacing` is (row spacing, column spacing, slice thickness) in mm.

    Raises:
        ValueError: if `image` is not 2-D or a spacing is not positive.
    """
    hu = np.asarray(image, dtype=np.float64)
    if hu.ndim != 2:
        raise ValueError(f"IMAGE must be 2-D, got {hu.shape}")
    row_mm, column_mm, thickness_mm = (float(s) for s in spacing)
    if min(row_mm, column_mm, thickness_mm) <= 0 or not all(map(math.isfinite, (row_mm, column_mm, thickness_mm))):
        raise ValueError(f"SPACING must be three positive mm values, got {spacing}")
    pixel_mm2 = row_mm * column_mm
    intracranial = intracranial_mask(hu)
    brain_area = float(intracranial.sum()) * pixel_mm2
    if brain_area < MIN_BRAIN_AREA_MM2:
        return HyperdensityResult(STATUS_NO_BRAIN, brain_area_mm2=brain_area, brain=intracranial)
    distance = ndimage.distance_transform_edt(intracranial, sampling=(row_mm, column_mm))
    brain = distance > parameters.brain_erosion_mm
    smoothed = ndimage.uniform_filter(hu, size=3, mode="nearest")
    candidates = brain & (smoothed >= BLOOD_LOW_HU) & (smoothed <= BLOOD_HIGH_HU)
    labels, _ = ndimage.label(candidates, structure=np.ones((3, 3), dtype=bool))
    outliers = (smoothed < RING_LOW_HU) | (smoothed > RING_HIGH_HU)
    ring_structure = _disc(parameters.ring_mm, row_mm, column_mm)
    pad_rows, pad_columns = ring_structure.shape[0] // 2 + 1, ring_structure.shape[1] // 2 + 1
    kept: list[npt.NDArray[np.bool_]] = []
    rejected = 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        # Work in the region's bounding box grown by the ring width (same result, far less work).
        window = (
            slice(max(0, box[0].start - pad_rows), box[0].stop + pad_rows),
            slice(max(0, box[1].start - pad_columns), box[1].stop + pad_columns),
        )
        local = labels[window] == index
        if float(local.sum()) * pixel_mm2 < parameters.min_region_area_mm2:
            continue
        ring = ndimage.binary_dilation(local, structure=ring_structure) & ~local
        if ring.any() and float(outliers[window][ring].mean()) > parameters.max_ring_outlier_fraction:
            rejected += 1
            continue
        region = np.zeros(hu.shape, dtype=bool)
        region[window] = local
        kept.append(region)
    if not kept:
        return HyperdensityResult(
            STATUS_MEASURED, brain_area_mm2=brain_area, rejected_region_count=rejected, brain=brain
        )
    regions = np.logical_or.reduce(kept)
    areas = [float(r.sum()) * pixel_mm2 for r in kept]
    largest = kept[int(np.argmax(areas))]
    centre = ndimage.center_of_mass(largest)
    total_area = float(regions.sum()) * pixel_mm2
    return HyperdensityResult(
        STATUS_MEASURED,
        region_count=len(kept),
        total_area_mm2=total_area,
        total_volume_mm3=total_area * thickness_mm,
        largest_region_area_mm2=max(areas),
        max_hu=float(hu[regions].max()),
        mean_hu=float(hu[regions].mean()),
        brain_area_mm2=brain_area,
        rejected_region_count=rejected,
        centroid=(round(centre[0]), round(centre[1])),
        bounding_box=bounding_box(largest),
        outline=region_outline(largest),
        regions=regions,
        brain=brain,
    )


def _disc(radius_mm: float, row_mm: float, column_mm: float) -> npt.NDArray[np.bool_]:
    """A structuring element: the pixels within `radius_mm` of the centre."""
    half_rows, half_columns = max(1, round(radius_mm / row_mm)), max(1, round(radius_mm / column_mm))
    rows, columns = np.ogrid[-half_rows : half_rows + 1, -half_columns : half_columns + 1]
    return np.asarray((rows * row_mm) ** 2 + (columns * column_mm) ** 2 <= radius_mm**2)


class TritonPythonModel:
    """Triton Python backend entry point: STATUS, MEASUREMENTS and LOCATIONS per slice."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Read the parameters and check the configured output types."""
        import json

        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        for name, dtype in (("STATUS", np.int32), ("MEASUREMENTS", np.float32), ("LOCATIONS", np.int32)):
            output = pb_utils.get_output_config_by_name(config, name)
            if output is None or pb_utils.triton_string_to_numpy(output["data_type"]) != dtype:
                raise ValueError(f"{name} must be configured as {np.dtype(dtype).name}")
        self.parameters = Parameters.from_config(config)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Analyse every slice of every request; errors stay per request."""
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
                spacings = pb_utils.get_input_tensor_by_name(request, "SPACING").as_numpy()
                if images.ndim != 3 or spacings.shape != (images.shape[0], 3):
                    raise ValueError(
                        f"IMAGE must be [batch, rows, columns] and SPACING [batch, 3], got "
                        f"{images.shape} and {spacings.shape}"
                    )
                results = [
                    find_hyperdensities(image, (float(s[0]), float(s[1]), float(s[2])), self.parameters)
                    for image, s in zip(images, spacings, strict=True)
                ]
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor("STATUS", np.array([[r.status] for r in results], dtype=np.int32)),
                            pb_utils.Tensor("MEASUREMENTS", np.stack([r.measurements() for r in results])),
                            pb_utils.Tensor("LOCATIONS", np.stack([r.locations() for r in results])),
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
