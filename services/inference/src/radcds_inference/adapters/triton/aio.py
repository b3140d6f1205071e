"""Async Triton calls (``tritonclient.grpc.aio``, KServe v2 ``ModelInfer``) with batching, retries,
a circuit breaker and optional system shared memory.

- **Batching**: the first axis of every input is the batch; a series' slices go in requests of
  at most the model's ``max_batch_size`` (read once from ``ModelConfig``), sent concurrently so
  Triton's dynamic batcher can merge them.
- **Timeouts and retries**: each request has ``timeout_s``; an unavailable or timed-out Triton is
  retried ``retries`` times with exponential backoff, then :class:`TritonUnavailable` is raised.
  A refused request (bad input, unknown model) raises :class:`TritonModelError` at once.
- **Circuit breaker** (:mod:`radcds_inference.adapters.triton.breaker`): consecutive unavailability opens
  it; while open, calls fail fast with :class:`TritonUnavailable` and Triton is not contacted.
- **System shared memory** (Triton "System Shared Memory" extension): when Triton shares the
  host (``shared_memory="system"``), input tensors are written to POSIX shared memory regions
  registered with Triton, and only their names travel over gRPC. Regions are pooled, registered
  once, re-registered after Triton restarts (it forgets registrations) and unregistered and
  unlinked by :meth:`AsyncTritonModels.close`. Outputs are small and travel over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from opentelemetry.instrumentation.utils import suppress_instrumentation
from tritonclient.utils import InferenceServerException, np_to_triton_dtype
from tritonclient.utils import shared_memory as shm

from radcds_inference.adapters.triton.breaker import CircuitBreaker, CircuitOpen
from radcds_inference.adapters.triton.errors import TritonModelError, TritonUnavailable

log = logging.getLogger(__name__)

#: gRPC status codes that mean "Triton is not there right now": retry later.
UNAVAILABLE_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN")
SharedMemoryMode = Literal["system", "none"]
#: Smallest shared memory region created (regions are sized in powers of two above it).
MIN_REGION_BYTES = 1 << 20


def _unavailable(exc: InferenceServerException) -> bool:
    status = str(exc.status() or "")
    return not status or any(code in status for code in UNAVAILABLE_CODES)


def _mentions_shared_memory(exc: InferenceServerException) -> bool:
    return "shared memory" in (exc.message() or "").lower()


@dataclass
class _Region:
    name: str
    key: str
    capacity: int
    handle: Any


class SystemSharedMemoryPool:
    """POSIX shared memory regions registered with Triton, reused across requests.

    Region names and keys carry the process id and a random suffix so several service
    processes on one host never collide.
    """

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix or f"radcds-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._free: list[_Region] = []
        self._all: list[_Region] = []
        self._registered: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def regions(self) -> int:
        """How many regions exist (in use or free)."""
        return len(self._all)

    async def acquire(self, client: grpcaio.InferenceServerClient, nbytes: int, timeout_s: float) -> _Region:
        """A registered region of at least ``nbytes`` bytes, reused if one is free."""
        async with self._lock:
            fits = [r for r in self._free if r.capacity >= nbytes]
            if fits:
                region = min(fits, key=lambda r: r.capacity)
                self._free.remove(region)
            else:
                capacity = max(MIN_REGION_BYTES, 1 << max(0, nbytes - 1).bit_length())
                name = f"{self._prefix}-{len(self._all)}"
                region = _Region(
                    name, f"/{name}", capacity, shm.create_shared_memory_region(name, f"/{name}", capacity)
                )
                self._all.append(region)
        if region.name not in self._registered:
            try:
                await self._register(client, region, timeout_s)
            except BaseException:
                self.release(region)
                raise
        return region

    async def _register(self, client: grpcaio.InferenceServerClient, region: _Region, timeout_s: float) -> None:
        with contextlib.suppress(InferenceServerException):  # not registered: the usual case
            await client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)
        await client.register_system_shared_memory(region.name, region.key, region.capacity, client_timeout=timeout_s)
        self._registered.add(region.name)

    def release(self, region: _Region) -> None:
        """Give a region back to the pool."""
        self._free.append(region)

    def forget_registrations(self) -> None:
        """Triton may have restarted (it keeps no registrations): register each region again on next use."""
        self._registered.clear()

    async def close(self, client: grpcaio.InferenceServerClient | None, timeout_s: float = 2.0) -> None:
        """Unregister every region from Triton (best effort) and unlink it."""
        for region in self._all:
            if client is not None and region.name in self._registered:
                try:
                    await client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)
                except InferenceServerException as exc:
                    log.info("shared memory region not unregistered", extra={"region": region.name, "error": str(exc)})
            shm.destroy_shared_memory_region(region.handle)
        self._all.clear()
        self._free.clear()
        self._registered.clear()


class AsyncTritonModels:
    """Runs models on Triton: ``await infer(model, version, inputs, outputs)`` (see the module docstring).

    Create and use it on one event loop (the gRPC aio channel belongs to it).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retries: int = 2,
        backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
        shared_memory: SharedMemoryMode = "none",
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if shared_memory not in ("system", "none"):
            raise ValueError(f"shared_memory must be 'system' or 'none', got {shared_memory!r}")
        self._url = url
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self.breaker = breaker or CircuitBreaker(name="triton", failure_threshold=5, reset_timeout_s=10.0)
        self._shared = SystemSharedMemoryPool() if shared_memory == "system" else None
        self._client: grpcaio.InferenceServerClient | None = None
        self._max_batch: dict[tuple[str, str], int] = {}

    @property
    def shared_memory(self) -> SharedMemoryMode:
        """``"system"`` when inputs travel through shared memory."""
        return "system" if self._shared is not None else "none"

    def _connection(self) -> grpcaio.InferenceServerClient:
        if self._client is None:
            self._client = grpcaio.InferenceServerClient(url=self._url)
        return self._client

    async def infer(
        self,
        model: str,
        version: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
    ) -> dict[str, npt.NDArray[Any]]:
        """Run ``model`` on a batch (first axis of every input) split by its ``max_batch_size``.

        Raises:
            TritonUnavailable: Triton unreachable or timing out after the retries, or the breaker is open.
            TritonModelError: Triton refused the request.
        """
        sizes = {int(a.shape[0]) for a in inputs.values()}
        if len(sizes) != 1:
            raise ValueError(f"every input needs the same batch size, got {sorted(sizes)}")
        (total,) = sizes
        limit = await self._call(lambda client: self._max_batch_size(client, model, version))
        chunks = [
            {name: np.ascontiguousarray(a[start : start + limit]) for name, a in inputs.items()}
            for start in range(0, total, limit)
        ]
        parts = await asyncio.gather(
            *(
                self._call(lambda client, chunk=chunk: self._infer_once(client, model, version, chunk, outputs))
                for chunk in chunks
            )
        )
        return {name: np.concatenate([p[name] for p in parts]) for name in outputs}

    async def _call(self, operation: Any) -> Any:
        """One operation with the breaker, bounded retries and backoff."""
        attempt = 0
        while True:
            try:
                self.breaker.before_call()
            except CircuitOpen as exc:
                raise TritonUnavailable(str(exc)) from exc
            try:
                result = await operation(self._connection())
            except InferenceServerException as exc:
                if self._shared is not None and _mentions_shared_memory(exc) and attempt == 0:
                    # Triton restarted and forgot our regions: register again, retry once.
                    self.breaker.release()
                    self._shared.forget_registrations()
                    attempt += 1
                    continue
                if not _unavailable(exc):
                    self.breaker.release()
                    raise TritonModelError(f"Triton refused the request: {exc.status()}: {exc.message()}") from exc
                self.breaker.record_failure()
                if self._shared is not None:
                    self._shared.forget_registrations()
                attempt += 1
                if attempt > self._retries:
                    raise TritonUnavailable(f"Triton unavailable: {exc.status() or exc.message()}") from exc
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
                continue
            except BaseException:
                self.breaker.release()
                raise
            self.breaker.record_success()
            return result

    async def _max_batch_size(self, client: grpcaio.InferenceServerClient, model: str, version: str) -> int:
        key = (model, version)
        if key not in self._max_batch:
            config = await client.get_model_config(model, version, as_json=True, client_timeout=self._timeout_s)
            size = int(config.get("config", {}).get("max_batch_size", 0) or 0)
            if size < 1:
                raise TritonModelError(f"model {model} does not batch (max_batch_size {size}); radcds sends batches")
            self._max_batch[key] = size
        return self._max_batch[key]

    async def _infer_once(
        self,
        client: grpcaio.InferenceServerClient,
        model: str,
        version: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
    ) -> dict[str, npt.NDArray[Any]]:
        region = None
        try:
            infer_inputs = []
            if self._shared is not None:
                arrays = [np.ascontiguousarray(a) for a in inputs.values()]
                region = await self._shared.acquire(client, sum(a.nbytes for a in arrays), self._timeout_s)
                shm.set_shared_memory_region(region.handle, arrays)
                offset = 0
                for name, array in zip(inputs, arrays, strict=True):
                    inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                    inp.set_shared_memory(region.name, array.nbytes, offset)
                    offset += array.nbytes
                    infer_inputs.append(inp)
            else:
                for name, array in inputs.items():
                    inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                    inp.set_data_from_numpy(np.ascontiguousarray(array))
                    infer_inputs.append(inp)
            result = await client.infer(
                model,
                infer_inputs,
                model_version=version,
                outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
                client_timeout=self._timeout_s,
            )
        finally:
            if region is not None and self._shared is not None:
                self._shared.release(region)
        out = {}
        for name in outputs:
            array = result.as_numpy(name)
            if array is None:
                raise TritonModelError(f"model {model} returned no {name}")
            out[name] = array
        return out

    async def models_ready(self, models: Sequence[tuple[str, str]], *, timeout_s: float = 2.0) -> dict[str, bool]:
        """``is_model_ready`` for each (name, version); all False when the server is not ready."""
        client = self._connection()
        try:
            # Readiness probes every few seconds would otherwise fill the traces with gRPC client spans.
            with suppress_instrumentation():
                if not await client.is_server_ready(client_timeout=timeout_s):
                    return {name: False for name, _ in models}
                return {
                    name: bool(await client.is_model_ready(name, version, client_timeout=timeout_s))
                    for name, version in models
                }
        except InferenceServerException:
            return {name: False for name, _ in models}

    async def close(self) -> None:
        """Release shared memory (unregister, unlink) and close the channel."""
        if self._shared is not None:
            await self._shared.close(self._client)
        if self._client is not None:
            await self._client.close()
            self._client = None
