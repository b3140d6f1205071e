"""One asyncio event loop in a daemon thread, for async clients used from threaded entrypoints.

The Kafka consumer loop and the gRPC server run handlers in threads; the Triton client is
``tritonclient.grpc.aio``, whose channel belongs to one event loop. :class:`LoopThread` owns that
loop and runs coroutines on it from any thread, in the caller's ``contextvars`` context (so the
current OpenTelemetry span, e.g. the Kafka CONSUMER span, is the parent of the spans the
coroutine opens).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running in its own daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "asyncio-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (to schedule work on it directly)."""
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (re-raising its exception) from another thread."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop: await the coroutine instead")
        context = contextvars.copy_context()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def copy_outcome(task: asyncio.Task[T]) -> None:
            if task.cancelled():
                future.cancel()
            elif (error := task.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result())

        def start() -> None:
            task = self._loop.create_task(coro, context=context)
            tasks.append(task)
            task.add_done_callback(copy_outcome)

        self._loop.call_soon_threadsafe(start)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            for task in tasks:
                self._loop.call_soon_threadsafe(task.cancel)
            raise

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and join its thread."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        if not self._loop.is_running():
            self._loop.close()
