"""Build ``1/model.onnx`` for the ``brain_window_onnx`` example model with ``onnx.helper``.

NOT FOR DIAGNOSTIC USE: an example of dropping an ONNX graph into the Triton model repository.
Run ``python models/brain_window_onnx/build_model.py`` to regenerate the committed file; the
output is deterministic (same bytes for the same onnx version).

Graph (ONNX opset 18), for a batch of CT slices in Hounsfield units:

    x = Cast(IMAGE, float)                                    # [batch, rows, columns]
    windowed = Clip((x - (centre - width / 2)) / width, 0, 1)  # brain window, 0..1
    inside = Cast(And(x >= low, x <= high), float)             # pixels inside the window
    WINDOW_STATISTICS = Concat(ReduceMean(windowed), ReduceMean(inside))  # [batch, 2]

The window centre and width are graph inputs' defaults held as initializers (40 HU and 80 HU,
the usual brain window).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WINDOW_CENTRE_HU = 40.0
WINDOW_WIDTH_HU = 80.0
OPSET = 18
OUTPUT = Path(__file__).resolve().parent / "1" / "model.onnx"


def build() -> onnx.ModelProto:
    """Return the checked ONNX model."""
    low = WINDOW_CENTRE_HU - WINDOW_WIDTH_HU / 2.0
    high = WINDOW_CENTRE_HU + WINDOW_WIDTH_HU / 2.0
    initializers = [
        numpy_helper.from_array(np.array(low, dtype=np.float32), "low"),
        numpy_helper.from_array(np.array(high, dtype=np.float32), "high"),
        numpy_helper.from_array(np.array(WINDOW_WIDTH_HU, dtype=np.float32), "width"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Cast", ["IMAGE"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["x", "low"], ["shifted"]),
        helper.make_node("Div", ["shifted", "width"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "zero", "one"], ["windowed"]),
        helper.make_node("ReduceMean", ["windowed", "axes"], ["windowed_mean"], keepdims=0),
        helper.make_node("GreaterOrEqual", ["x", "low"], ["above_low"]),
        helper.make_node("LessOrEqual", ["x", "high"], ["below_high"]),
        helper.make_node("And", ["above_low", "below_high"], ["inside_bool"]),
        helper.make_node("Cast", ["inside_bool"], ["inside"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["inside", "axes"], ["inside_fraction"], keepdims=0),
        helper.make_node("Unsqueeze", ["windowed_mean", "one_axis"], ["windowed_mean_2d"]),
        helper.make_node("Unsqueeze", ["inside_fraction", "one_axis"], ["inside_fraction_2d"]),
        helper.make_node("Concat", ["windowed_mean_2d", "inside_fraction_2d"], ["WINDOW_STATISTICS"], axis=1),
    ]
    initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis"))
    graph = helper.make_graph(
        nodes,
        "brain_window_statistics",
        [helper.make_tensor_value_info("IMAGE", TensorProto.INT16, ["batch", "rows", "columns"])],
        [helper.make_tensor_value_info("WINDOW_STATISTICS", TensorProto.FLOAT, ["batch", 2])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="radcds",
        doc_string="Brain-window statistics of CT slices in HU. NOT FOR DIAGNOSTIC USE.",
    )
    model.ir_version = 8  # readable by onnxruntime releases back to 1.10
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    onnx.save(build(), OUTPUT)
    print(f"wrote {OUTPUT}")
