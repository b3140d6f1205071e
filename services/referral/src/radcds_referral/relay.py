"""Outbox relay: publishes consultation events that are stored but not yet on Kafka.

The CDS Hooks response never waits for Kafka; the consultation row is the durable record, and
this relay sends its event (at least once; the event id is the consultation id, so consumers
dedupe a repeat).
"""

from __future__ import annotations

import logging
import threading

from radcds.domain.events import ORDER_EVALUATED
from radcds.domain.ports import BatchEventPublisher
from radcds_referral.repository import ReferralRepository

log = logging.getLogger(__name__)


class OutboxRelay:
    """A daemon thread that drains the outbox every ``interval_s``."""

    def __init__(
        self, repository: ReferralRepository, publisher: BatchEventPublisher, *, interval_s: float = 0.5
    ) -> None:
        self._repository = repository
        self._publisher = publisher
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def drain(self) -> int:
        """Publish what is pending in one batch; returns how many events the broker acknowledged."""
        pending = self._repository.unpublished()
        if not pending:
            return 0
        try:
            sent = self._publisher.publish_many(ORDER_EVALUATED, [(p, cid, oid) for cid, oid, p in pending])
        except Exception as exc:
            self.failures += 1
            log.warning("consultation events not published yet", extra={"error_class": type(exc).__name__})
            return 0
        self._repository.mark_published(sent)
        return len(sent)

    def start(self) -> None:
        """Run :meth:`drain` periodically until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(self._interval_s):
                try:
                    self.drain()
                except Exception:
                    log.exception("outbox relay failed")

        self._thread = threading.Thread(target=loop, name="referral-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after a last drain."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.drain()
        except Exception:
            log.warning("last outbox drain failed; events stay stored and go out at next start")
