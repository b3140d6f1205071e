"""A circuit breaker for calls to a dependency that may be down (Nygard, *Release It!*, "Circuit Breaker").

- **closed**: calls go through; each failure counts, a success resets the count.
- **open**: after ``failure_threshold`` consecutive failures; calls fail at once with
  :class:`CircuitOpen` (no network traffic) for ``reset_timeout_s``.
- **half-open**: after the timeout one trial call goes through; its success closes the breaker,
  its failure opens it again for another ``reset_timeout_s``.

The caller decides what a failure is (for Triton: unavailable or timed out, not a refused input)
by calling :meth:`CircuitBreaker.record_failure`. The clock is injectable for tests.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class CircuitOpen(RuntimeError):
    """The breaker is open: the dependency failed repeatedly and is not called for now."""


class BreakerState(enum.Enum):
    """The three states of :class:`CircuitBreaker`."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        failure_threshold: int,
        reset_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout_s <= 0:
            raise ValueError("reset_timeout_s must be positive")
        self.name = name
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout elapsed reads as half-open)."""
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_timeout_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Admit a call or raise :class:`CircuitOpen`; in half-open, only one trial call is admitted."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} consecutive failures")

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed: count it; open (or re-open) at the threshold or when the trial call failed."""
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self._threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False

    def release(self) -> None:
        """A call ended neither in success nor failure (e.g. refused input): free the trial slot."""
        with self._lock:
            self._trial_in_flight = False
