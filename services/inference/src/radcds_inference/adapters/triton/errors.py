"""The two ways a call to a model on Triton fails (KServe v2 inference protocol over gRPC).

:class:`radcds_inference.adapters.triton.aio.AsyncTritonModels` maps ``tritonclient`` errors to them.
"""

from __future__ import annotations


class TritonUnavailable(RuntimeError):
    """Triton could not be reached or did not answer in time."""


class TritonModelError(RuntimeError):
    """Triton answered but refused the request (bad input, unknown model)."""
