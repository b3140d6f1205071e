"""Triton Python-backend model ``pixel_statistics`` (version 1): technical image statistics.

Walking skeleton only. NOT FOR DIAGNOSTIC USE. See ``../MODEL_CARD.md``.

``compute_statistics`` is the whole numerical core and needs only numpy, so this file can be
imported and tested without Triton; ``triton_python_backend_utils`` is imported lazily inside
:class:`TritonPythonModel`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

#: Order of the values in the ``STATISTICS`` output.
STATISTICS_NAMES = (
    "mean",
    "standard_deviation",
    "percentile_05",
    "percentile_95",
    "otsu_threshold",
    "foreground_fraction_percent",
)
HISTOGRAM_BINS = 256


def otsu_threshold(values: npt.ArrayLike, *, bins: int = HISTOGRAM_BINS) -> float:
    """Return Otsu's threshold of `values` from a `bins`-bin histogram between min and max.

    Bin ``k`` covers ``[edge_k, edge_k+1)`` (the last bin is closed). For every split after bin
    ``k`` the between-class variance ``w0 * w1 * (mu0 - mu1) ** 2`` is computed from the bin
    centres; the first ``k`` that maximises it wins, and the threshold is that bin's upper edge,
    the boundary between the two classes. A constant image has threshold equal to its value.
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(flat.min()), float(flat.max())
    if low == high:
        return low
    counts, edges = np.histogram(flat, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2.0
    probabilities = counts / counts.sum()
    weight_background = np.cumsum(probabilities)[:-1]
    first_moment = np.cumsum(probabilities * centres)[:-1]
    total_mean = float(np.sum(probabilities * centres))
    weight_foreground = 1.0 - weight_background
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight_background - first_moment) ** 2 / (weight_background * weight_foreground)
    between = np.where((weight_background > 0) & (weight_foreground > 0), between, -1.0)
    return float(edges[int(np.argmax(between)) + 1])


def compute_statistics(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Return the six ``STATISTICS`` values of one image as ``float32``, in this order.

    mean, population standard deviation, 5th and 95th percentile (linear interpolation),
    Otsu threshold (:func:`otsu_threshold`), and the share of pixels strictly above that
    threshold in percent (0..100). Units are those of `image` except the last one.

    Raises:
        ValueError: if `image` is empty.
    """
    values = np.asarray(image, dtype=np.float64)
    if values.size == 0:
        raise ValueError("image has no pixels")
    percentile_05, percentile_95 = np.percentile(values, [5.0, 95.0])
    threshold = otsu_threshold(values)
    foreground_percent = 100.0 * np.count_nonzero(values > threshold) / values.size
    return np.array(
        [
            values.mean(),
            values.std(),
            percentile_05,
            percentile_95,
            threshold,
            foreground_percent,
        ],
        dtype=np.float32,
    )


class TritonPythonModel:
    """Triton Python backend entry point: one ``STATISTICS`` row per ``IMAGE`` batch item."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Check that the loaded configuration matches what ``execute`` produces."""
        import json

        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        output = pb_utils.get_output_config_by_name(config, "STATISTICS")
        if pb_utils.triton_string_to_numpy(output["data_type"]) != np.float32:
            raise ValueError("STATISTICS must be TYPE_FP32")

    def execute(self, requests: list[Any]) -> list[Any]:
        """Compute statistics for every item of every request; errors stay per request."""
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                batch = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
                if batch.ndim != 3:
                    raise ValueError(f"IMAGE must be [batch, rows, columns], got {batch.shape}")
                statistics = np.stack([compute_statistics(item) for item in batch])
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("STATISTICS", statistics)]))
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
