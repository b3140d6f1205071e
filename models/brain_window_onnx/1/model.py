"""Triton Python-backend model ``brain_window_onnx`` (version 1): an ONNX graph run by onnxruntime.

NOT FOR DIAGNOSTIC USE: the example of how a trained ONNX model drops into radcds (see
``docs/models.md``). The graph (``model.onnx`` beside this file, built by ``../build_model.py``)
computes brain-window statistics of CT slices; this file only loads it and runs it.

Triton serves only the Python backend here (the ``nvidia-pytriton`` wheel), so ONNX models run
through onnxruntime inside a Python-backend model. In NVIDIA's Triton container the same
``model.onnx`` could instead be served by the ``onnxruntime`` backend with a config change only.
"""

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ONNX_FILE = "model.onnx"
INPUT = "IMAGE"
OUTPUT = "WINDOW_STATISTICS"


def load_session(path: Path) -> Any:
    """An onnxruntime CPU session for the graph at `path`, one intra-op thread (Triton scales by instances)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def window_statistics(session: Any, images: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Run the graph on a ``[batch, rows, columns]`` INT16 batch; returns ``[batch, 2]`` float32."""
    batch = np.ascontiguousarray(images, dtype=np.int16)
    if batch.ndim != 3 or batch.shape[1] == 0 or batch.shape[2] == 0:
        raise ValueError(f"{INPUT} must be a non-empty [batch, rows, columns] tensor, got {batch.shape}")
    (result,) = session.run([OUTPUT], {INPUT: batch})
    return np.asarray(result, dtype=np.float32)


class TritonPythonModel:
    """Triton Python backend entry point: WINDOW_STATISTICS for each IMAGE batch."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the ONNX graph of this version folder."""
        self.session = load_session(Path(args["model_repository"]) / args["model_version"] / ONNX_FILE)

    def execute(self, requests: list[Any]) -> list[Any]:
        """One onnxruntime call per request; errors stay per request."""
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                images = pb_utils.get_input_tensor_by_name(request, INPUT).as_numpy()
                statistics = window_statistics(self.session, images)
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT, statistics)]))
            except ValueError as error:
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG),
                    )
                )
        return responses

    def finalize(self) -> None:
        """Release the session."""
        self.session = None
