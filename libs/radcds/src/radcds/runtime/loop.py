"""One asyncio event loop in a daemon thread, for async clients used from threaded entrypoints.

The Kafka consumer loop and the gRPC server run handlers in threads; the Triton client is
``tritonclient.grpc.aio``, whose channel belongs to one event loop. :class:`LoopThread` owns that
loop and runs coroutines on it from any thread (``asyncio.run_coroutine_threadsafe``).
"""

from __future__ import annotations

import asyncio
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
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the loop and join its thread."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        if not self._loop.is_running():
            self._loop.close()
