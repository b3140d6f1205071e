"""Use cases of the imaging service: storing instances (PS3.18 10.5 STOW-RS) and retrieval."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from radcds.adapters.db.outbox import OutboxRelay
from radcds.domain.events import INSTANCE_STORED, EventKind, ImagingInstanceStored
from radcds_imaging.adapters.db.indexing import attribute_row
from radcds_imaging.adapters.db.instances import DuplicateInstanceError, InstanceQueries, SqlInstanceRepository
from radcds_imaging.adapters.diskguard import DiskSpaceGuard
from radcds_imaging.adapters.part10 import (
    FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
    FAILURE_OUT_OF_RESOURCES,
    DicomRejected,
    ParsedInstance,
    read_part10,
)
from radcds_imaging.adapters.storage import InstanceStore

log = logging.getLogger(__name__)
#: Namespace for deterministic event ids: the same stored instance always yields the same id.
EVENT_NAMESPACE = uuid.UUID("6f1c7c1e-9d0a-4f0e-9c55-6a2b0d3c1a01")


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """An instance now held by imaging."""

    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class FailedInstance:
    """A part that was refused, with its DICOM failure reason."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int
    message: str


@dataclass
class StoreOutcome:
    """Result of one STOW-RS request."""

    stored: list[StoredInstance] = field(default_factory=list)
    failed: list[FailedInstance] = field(default_factory=list)


class StoreTransaction(Protocol):
    """One all-or-nothing store transaction (the repository port of the store use case)."""

    def known(self, sop_instance_uids: Sequence[str]) -> set[str]:
        """Those of ``sop_instance_uids`` already stored."""

    def stored_digest(self, sop_instance_uid: str) -> str | None:
        """The SHA-256 of the stored instance, None when it is not held."""

    def add(
        self,
        instances: Sequence[Mapping[str, Any]],
        attributes: Sequence[dict[str, Any]],
        studies: Iterable[str],
        now: datetime,
    ) -> None:
        """Keep new instances (rows from :func:`instance_row`), their header attributes and note their studies."""

    def enqueue(self, kind: EventKind, events: Sequence[tuple[dict[str, Any], str, str]]) -> None:
        """Write events (payload, event id, subject), published after the commit."""


class InstanceRepository(Protocol):
    """Where stored instances are recorded; a transaction raises ``DuplicateInstanceError`` on a concurrent twin."""

    def transaction(self) -> AbstractContextManager[StoreTransaction]:
        """Begin a store transaction (committed on leaving the block, rolled back on an exception)."""


def instance_url(base: str, i: ParsedInstance) -> str:
    """WADO-RS URL of an instance (PS3.18 10.4.1.1.1)."""
    r = i.instance
    return (
        f"{base}/dicom-web/studies/{r.study_instance_uid}/series/{r.series_instance_uid}/instances/{r.sop_instance_uid}"
    )


class ImagingService:
    """Stores instances once, atomically, and announces each newly stored one."""

    def __init__(
        self,
        *,
        engine: Engine,
        store: InstanceStore,
        outbox: OutboxRelay,
        public_base_url: str,
        guard: DiskSpaceGuard | None = None,
        transfer_syntaxes: frozenset[str] | None = None,
    ) -> None:
        self._store = store
        self._repository: InstanceRepository = SqlInstanceRepository(engine)
        self._instances = InstanceQueries(engine)
        #: Publishes ``instance.stored`` after each commit (woken by :meth:`OutboxRelay.notify`); handed in by the
        #: composition root, which starts and stops it.
        self.outbox = outbox
        self._writer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imaging-store")
        self._base = public_base_url.rstrip("/")
        self._guard = guard
        #: Transfer syntaxes accepted over STOW-RS (None: any that parses); others fail with 0xC122.
        self._transfer_syntaxes = transfer_syntaxes

    def store_instances(self, *, parts: list[bytes], study_instance_uid: str | None = None) -> StoreOutcome:
        """Store each part; refused parts carry the reason and nothing partial is kept.

        The accepted parts of one request are stored together (one transaction, one batch of
        events); if that batch cannot be committed as a whole, each part is stored on its own.
        """
        results: list[StoredInstance | FailedInstance] = []
        accepted: list[tuple[int, ParsedInstance, bytes]] = []
        disk_full: str | None = None
        for data in parts:
            try:
                parsed = read_part10(data, supported_transfer_syntaxes=self._transfer_syntaxes)
                if study_instance_uid and parsed.instance.study_instance_uid != study_instance_uid:
                    raise DicomRejected(
                        FAILURE_DATASET_DOES_NOT_MATCH_SOP_CLASS,
                        "StudyInstanceUID differs from the study in the request URL",
                        sop_class_uid=parsed.instance.sop_class_uid,
                        sop_instance_uid=parsed.instance.sop_instance_uid,
                    )
                if disk_full is None:  # one look at the volume per request, for all of its parts together
                    disk_full = self._disk_full(sum(len(part) for part in parts))
                if disk_full:
                    raise DicomRejected(
                        FAILURE_OUT_OF_RESOURCES,
                        f"storage nearly full: {disk_full}",
                        sop_class_uid=parsed.instance.sop_class_uid,
                        sop_instance_uid=parsed.instance.sop_instance_uid,
                    )
                accepted.append((len(results), parsed, data))
                results.append(StoredInstance(parsed.instance.sop_class_uid, parsed.instance.sop_instance_uid, ""))
            except DicomRejected as exc:
                results.append(FailedInstance(exc.sop_class_uid, exc.sop_instance_uid, exc.reason, str(exc)))
        if len(accepted) == 1:
            position, parsed, data = accepted[0]
            results[position] = self._store_safely(parsed, data)
        elif accepted:
            for position, result in self._store_batch(accepted):
                results[position] = result
        outcome = StoreOutcome()
        for result in results:
            if isinstance(result, StoredInstance):
                outcome.stored.append(result)
            else:
                outcome.failed.append(result)
        return outcome

    def _disk_full(self, incoming_bytes: int) -> str:
        """Why the volume has no room for ``incoming_bytes`` more (the guard's reason), or "" when it has."""
        if self._guard is None or self._guard.check(incoming_bytes):
            return ""
        return self._guard.reason

    def _store_safely(self, parsed: ParsedInstance, data: bytes) -> StoredInstance | FailedInstance:
        try:
            return self._store_one(parsed, data)
        except DicomRejected as exc:
            return FailedInstance(exc.sop_class_uid, exc.sop_instance_uid, exc.reason, str(exc))

    def _store_batch(
        self, accepted: list[tuple[int, ParsedInstance, bytes]]
    ) -> list[tuple[int, StoredInstance | FailedInstance]]:
        """Store new instances in one transaction with one batch of events; duplicates are reported as such.

        Any failure rolls the whole batch back (files removed) and stores the parts one by one, so a
        bad neighbour never costs a good instance its place.
        """
        results: list[tuple[int, StoredInstance | FailedInstance]] = []
        uids = [parsed.instance.sop_instance_uid for _, parsed, _ in accepted]
        new: list[tuple[int, ParsedInstance, bytes, str, str]] = []
        now = datetime.now(UTC)
        written: list[str] = []
        try:
            with self._repository.transaction() as tx:
                known = tx.known(uids)
                seen: set[str] = set()
                for position, parsed, data in accepted:
                    ref = parsed.instance
                    url = instance_url(self._base, parsed)
                    if ref.sop_instance_uid in known or ref.sop_instance_uid in seen:
                        log.info("duplicate instance ignored")
                        results.append(
                            (position, StoredInstance(ref.sop_class_uid, ref.sop_instance_uid, url, duplicate=True))
                        )
                        continue
                    seen.add(ref.sop_instance_uid)
                    new.append((position, parsed, data, _storage_key(parsed), hashlib.sha256(data).hexdigest()))
                if not new:
                    return results
                items = [(key, data) for _, _, data, key, _ in new]
                # The files are written (and fsynced) while the rows are prepared and inserted; the
                # transaction commits only after every file is durable.
                writing = self._writer.submit(self._store.put_many, items)
                try:
                    tx.add(
                        [instance_row(parsed, key, len(data), digest, now) for _, parsed, data, key, digest in new],
                        [attribute_row(parsed.dataset, parsed.instance.sop_instance_uid) for _, parsed, *_ in new],
                        dict.fromkeys(parsed.instance.study_instance_uid for _, parsed, *_ in new),
                        now,
                    )
                    self._announce(tx, new)
                finally:
                    failure = writing.exception()  # waits for the files in every case
                    if failure is None:
                        written = [key for key, _ in items]
                if failure is not None:
                    raise failure
        except Exception as exc:
            for key in written:
                self._store.delete(key)
            log.warning("batch store failed, storing one by one", extra={"error_class": type(exc).__name__})
            return [(position, self._store_safely(parsed, data)) for position, parsed, data in accepted]
        self.outbox.notify()
        for position, parsed, *_ in new:
            ref = parsed.instance
            results.append(
                (position, StoredInstance(ref.sop_class_uid, ref.sop_instance_uid, instance_url(self._base, parsed)))
            )
        return results

    def _announce(self, tx: StoreTransaction, new: list[tuple[int, ParsedInstance, bytes, str, str]]) -> None:
        """Write ``instance.stored`` for each new instance to the outbox, in the store transaction (the
        relay publishes them once the transaction has committed)."""
        events = []
        for _, parsed, data, _, digest in new:
            ref = parsed.instance
            payload = ImagingInstanceStored(
                ref, parsed.context, parsed.transfer_syntax_uid, instance_url(self._base, parsed), len(data)
            ).to_payload()
            events.append((payload, _event_id(ref.sop_instance_uid, digest), ref.study_instance_uid))
        tx.enqueue(INSTANCE_STORED, events)

    def _store_one(self, parsed: ParsedInstance, data: bytes) -> StoredInstance:
        ref = parsed.instance
        url = instance_url(self._base, parsed)
        digest = hashlib.sha256(data).hexdigest()
        key = _storage_key(parsed)
        written = False
        now = datetime.now(UTC)
        try:
            with self._repository.transaction() as tx:
                existing = tx.stored_digest(ref.sop_instance_uid)
                if existing is not None:
                    log.info("duplicate instance ignored", extra={"same_content": existing == digest})
                    return StoredInstance(ref.sop_class_uid, ref.sop_instance_uid, url, duplicate=True)
                self._store.put(key, data)
                written = True
                # The row, its QIDO-RS attributes and study assembly, in one transaction.
                tx.add(
                    [instance_row(parsed, key, len(data), digest, now)],
                    [attribute_row(parsed.dataset, ref.sop_instance_uid)],
                    [ref.study_instance_uid],
                    now,
                )
                self._announce(tx, [(0, parsed, data, key, digest)])
        except DuplicateInstanceError:
            # A concurrent attempt stored the same SOP Instance first: ours is a duplicate.
            self._store.delete(key)
            log.info("duplicate instance ignored (concurrent store)")
            return StoredInstance(ref.sop_class_uid, ref.sop_instance_uid, url, duplicate=True)
        except Exception as exc:
            # The row was rolled back by leaving the transaction with the exception; remove our file.
            if written:
                self._store.delete(key)
            log.error("instance not stored", extra={"error_class": type(exc).__name__})
            raise DicomRejected(
                FAILURE_OUT_OF_RESOURCES,
                "could not store the instance",
                sop_class_uid=ref.sop_class_uid,
                sop_instance_uid=ref.sop_instance_uid,
            ) from exc
        self.outbox.notify()
        return StoredInstance(ref.sop_class_uid, ref.sop_instance_uid, url)

    def retrieve_instance(self, *, study: str, series: str, instance: str) -> bytes | None:
        """The Part 10 bytes of one instance, or None if unknown."""
        key = self._instances.storage_key(study=study, series=series, instance=instance)
        return None if key is None else self._store.get(key)


def _storage_key(parsed: ParsedInstance) -> str:
    """A key of its own for each store attempt, so a losing or failing attempt never removes the
    file of a concurrent attempt that won (the same instance resent on another association)."""
    ref = parsed.instance
    return f"{ref.study_instance_uid}/{ref.series_instance_uid}/{ref.sop_instance_uid}.{uuid.uuid4().hex[:12]}.dcm"


def _event_id(sop_instance_uid: str, digest: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{sop_instance_uid}:{digest}"))


def instance_row(parsed: ParsedInstance, key: str, size: int, digest: str, now: datetime) -> dict[str, object]:
    """The ``dicom_instances`` row of a newly stored instance (PS3.3 C.12.1 SOP Common identifiers)."""
    ref = parsed.instance
    return {
        "sop_instance_uid": ref.sop_instance_uid,
        "study_instance_uid": ref.study_instance_uid,
        "series_instance_uid": ref.series_instance_uid,
        "sop_class_uid": ref.sop_class_uid,
        "transfer_syntax_uid": parsed.transfer_syntax_uid,
        "modality": parsed.context.modality,
        "patient_id": parsed.context.patient_id,
        "accession_number": parsed.context.accession_number,
        "storage_key": key,
        "size_bytes": size,
        "sha256": digest,
        "received_at": now,
    }
