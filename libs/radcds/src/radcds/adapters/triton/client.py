"""Calling models on Triton over gRPC (KServe v2 inference protocol, ``ModelInfer``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
from opentelemetry.instrumentation.utils import suppress_instrumentation
from tritonclient.utils import InferenceServerException

#: gRPC status codes that mean "Triton is not there right now": retry later.
_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN")


class TritonUnavailable(RuntimeError):
    """Triton could not be reached or did not answer in time."""


class TritonModelError(RuntimeError):
    """Triton answered but refused the request (bad input, unknown model)."""


class TritonClient:
    """A thin wrapper over ``tritonclient.grpc`` that maps errors to the two cases above."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self._client = grpcclient.InferenceServerClient(url=url)
        self._timeout_s = timeout_s

    def infer_image(
        self,
        model: str,
        image: npt.NDArray[np.int16],
        *,
        version: str = "",
        input_name: str = "IMAGE",
        output_name: str = "STATISTICS",
    ) -> npt.NDArray[np.float32]:
        """Send one INT16 image (batch of 1) and return the output vector for it."""
        if image.dtype != np.int16 or image.ndim != 2:
            raise ValueError("expected a 2-D int16 image")
        batch = np.ascontiguousarray(image[np.newaxis, ...])
        inp = grpcclient.InferInput(input_name, list(batch.shape), "INT16")
        inp.set_data_from_numpy(batch)
        try:
            result = self._client.infer(
                model,
                [inp],
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(output_name)],
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if any(code in status for code in _UNAVAILABLE) or not status:
                raise TritonUnavailable(f"Triton unavailable: {status or exc.message()}") from exc
            raise TritonModelError(f"Triton refused the request: {status}") from exc
        out = result.as_numpy(output_name)
        if out is None:
            raise TritonModelError(f"model {model} returned no {output_name}")
        return np.asarray(out[0])

    def model_ready(self, model: str) -> bool:
        """True when the server is live and ``model`` is loaded."""
        try:
            # Readiness probes every few seconds would otherwise fill the traces with gRPC client spans.
            with suppress_instrumentation():
                return bool(
                    self._client.is_server_ready(client_timeout=2.0)
                    and self._client.is_model_ready(model, client_timeout=2.0)
                )
        except InferenceServerException:
            return False

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()
