"""Streams of studies through the fault stack, and the end-to-end count every fault scenario ends with.

A stream sends, per study, first its order as an HL7 v2 ORM^O01 over MLLP to reporting (HL7 v2.5.1 4.4.1, Appendix
C.4; radcds_devstack.samples.orm_o01: ORC-1 NW, OBR-18 the accession, ZDS-1 the Study Instance UID, procedure CPT
71046 for a chest CR or 70450 for a head CT), resent until the answer is MSA-1 AA (an ACK lost to a fault means a
resend of the same MSH-10, which reporting acknowledges again without a second ServiceRequest), then the study.
It sends real studies over STOW-RS (PS3.18 10.5) from a background thread at a steady pace: pydicom-data's
head CT slice 693_UNCI.dcm and, every ``chest_every``-th, the chest CR RG1_UNCI.dcm (radcds_devstack.samples), each
with fresh UIDs, its own accession number (0008,0050) and its own Patient ID. A STOW that fails (imaging killed, a
connection cut) is sent again until imaging answers 200: imaging stores a SOP Instance once, so a resend is no
second study.

The count (:func:`count`) reads what came out at both ends:

* orders: the ServiceRequests reporting stored per study; ``orders_lost`` are studies without one, ``orders_dup``
  every ServiceRequest beyond the first of a study (ORM resends are counted apart, ``order_resends``);
* reports: the DiagnosticReports reporting stored per study (its PostgreSQL ``fhir_resources``); ``lost`` are studies
  without one, ``dup`` every report beyond the first of a study;
* ORUs: the ORU^R01 messages reporting queued per study (``hl7_outbound_messages``, one per report version and
  destination, MSH-10 fixed) against what the peer accepted (:class:`peer.FaultPeer`, AA). ``oru_lost``: queued
  messages the peer never accepted and that are not parked (plus studies with a report and no ORU queued at all);
  ``parked``: refused by the peer with AE, parked for an operator (HL7 v2.5.1 2.9: an application error is not
  retried), counted apart and not as lost; ``oru_dup``: accepted messages no queued message explains, and accepted
  report versions (distinct MSH-10) that repeat the previous accepted version of the same study word for word
  (OBR-25 and every OBX-5), i.e. the same report sent twice. The same MSH-10 accepted again is an MLLP resend
  after a timeout or AR (HL7 v2.5.1 2.10.1: the receiver discards it as a duplicate), counted as ``resent``.

Waiting for the end (:func:`settle`) has generous deadlines and asserts no duration.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hl7
import hl7.client
import httpx
import psycopg
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

from radcds_devstack import processes
from radcds_devstack.demo import stow
from radcds_devstack.samples import chest_cr, head_ct, orm_o01, part10
from radcds_devstack.stack import LocalStack

from .peer import FaultPeer, Receipt

T = TypeVar("T")
#: The consumer groups a study passes through, and what each reads.
CONSUMER_GROUPS = ("radcds-inference", "radcds-fusion", "radcds-reporting")
_RUN = random.randrange(10**5, 10**6)  # keeps accession numbers apart across sessions on one database
_SEQ = itertools.count()


def eventually(
    probe: Callable[[], T | None], *, timeout_s: float = 180.0, interval_s: float = 0.5, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; a probe that raises means "not yet" (a component is
    down). No timing assertion: a generous bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = probe()
            if value:
                return value
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {timeout_s:.0f}s")


# ---- studies ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Study:
    """One study of a stream: its UID, accession number and the Part 10 bytes of its one instance."""

    study_uid: str
    accession: str
    patient_id: str
    modality: str
    part10: bytes


def make_studies(n: int, *, label: str, chest_every: int = 5) -> list[Study]:
    """``n`` new studies: head CT slices, every ``chest_every``-th a chest CR (0: none), each its own patient."""
    studies = []
    for i in range(n):
        seq = next(_SEQ)
        chest = chest_every > 0 and i % chest_every == chest_every - 1
        ds = chest_cr() if chest else head_ct()
        accession = f"F{_RUN}{seq:05d}"  # SH, at most 16 characters (PS3.5 6.2)
        ds.AccessionNumber = accession
        ds.PatientID = f"FLT-{label[:12]}-{_RUN}-{seq}"
        studies.append(Study(str(ds.StudyInstanceUID), accession, str(ds.PatientID), str(ds.Modality), part10(ds)))
    return studies


class Stream:
    """Sends, from a thread, ``interval_s`` apart, each study's ORM^O01 order until reporting answers AA, then the
    study over STOW-RS until imaging answers 200 (resending after any failure)."""

    def __init__(self, stack: LocalStack, studies: list[Study], *, interval_s: float = 0.3) -> None:
        self.stack = stack
        self.studies = studies
        self.interval_s = interval_s
        self.sent = 0
        self.resends = 0
        self.order_resends = 0
        self._thread = threading.Thread(target=self._run, name="fault-stream", daemon=True)
        self._stop = threading.Event()

    def _order(self, study: Study) -> None:
        chest = study.modality != "CT"
        message = orm_o01(
            f"ORM-{study.accession}",
            f"PLC{study.accession}",
            f"FIL{study.accession}",
            study.accession,
            study.study_uid,
            study.patient_id,
            procedure="71046^XR CHEST 2 VIEWS^CPT4" if chest else "70450^CT HEAD WO CONTRAST^CPT4",
            modality=study.modality,
        ).replace("\r\n", "\r")
        while not self._stop.is_set():
            try:
                with hl7.client.MLLPClient(self.stack.host, self.stack.ports.reporting_mllp) as client:
                    client.socket.settimeout(10)
                    ack = hl7.parse(client.send_message(message).decode("utf-8", "replace").strip("\x0b\x1c\r"))
                if str(ack.segment("MSA")[1]) == "AA":
                    return
            except (OSError, KeyError, IndexError, ValueError):
                pass
            self.order_resends += 1
            self._stop.wait(0.5)

    def _run(self) -> None:
        for study in self.studies:
            self._order(study)
            while not self._stop.is_set():
                try:
                    stow(self.stack, [study.part10])
                    break
                except (httpx.HTTPError, OSError):
                    self.resends += 1
                    self._stop.wait(0.5)
            self.sent += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._stop.set()
        self._thread.join(timeout=600)

    def wait_sent(self, k: int, *, timeout_s: float = 180.0) -> None:
        """Until ``k`` studies are stored (mid-stream is where the faults go)."""
        eventually(lambda: self.sent >= k, timeout_s=timeout_s, interval_s=0.1, what=f"{k} studies sent")

    def join(self) -> None:
        """Until every study is stored."""
        self._thread.join(timeout=600)
        assert self.sent == len(self.studies), f"only {self.sent} of {len(self.studies)} studies were sent"


def mid_stream(stack: LocalStack, stream: Stream, studies: list[Study]) -> None:
    """Until a third of the stream is sent and its first report is stored: the stack is busy end to end."""
    stream.wait_sent(len(studies) // 3)
    eventually(lambda: report_counts(stack, studies), what="the first reports of the stream")


# ---- faults ----------------------------------------------------------------------------------------------------
def sigkill(stack: LocalStack, name: str) -> None:
    """SIGKILL the process group of a service or component (no clean shutdown), and forget its pid."""
    pid = processes.pid_of(name, stack.run_dir)
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    processes.stop(name, stack.run_dir, timeout_s=5)
    assert processes.pid_of(name, stack.run_dir) is None


def restart_service(stack: LocalStack, service: str) -> None:
    """Start a radcds service again and wait for its readiness."""
    stack.start_service(service)
    stack.wait_service(service, timeout_s=120)


@contextlib.contextmanager
def stopped(stack: LocalStack, component: str) -> Iterator[None]:
    """Stop ``kafka``, ``postgres`` or ``triton`` (SIGTERM, then SIGKILL) for the block, then start it again on the
    same data and wait until it serves."""
    starts: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "kafka": (stack.kafka_broker.start, lambda: stack.kafka_broker.wait(timeout_s=180)),
        "postgres": (stack.postgres_cluster.start, lambda: stack.postgres_cluster.wait(timeout_s=120)),
        "triton": (stack.triton_server.start, lambda: stack.triton_server.wait(timeout_s=240)),
    }
    start, wait = starts[component]
    assert processes.stop(component, stack.run_dir), f"{component} was not running"
    try:
        yield
    finally:
        start()
        wait()


# ---- the count -------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """A scenario's end-to-end count (the module docstring defines each number)."""

    scenario: str
    studies: int
    reports: int
    lost: int
    dup: int
    orus: int
    oru_lost: int
    oru_dup: int
    parked: int = 0
    resent: int = 0
    orders: int = 0
    orders_lost: int = 0
    orders_dup: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """``FAULT <scenario>: studies=40 reports=40 lost=0 dup=0 orus=40 oru_lost=0 oru_dup=0 ... (62 s)``."""
        extra = "".join(f" {k}={v}" for k, v in self.notes.items())
        return (
            f"FAULT {self.scenario}: studies={self.studies} reports={self.reports} lost={self.lost} dup={self.dup} "
            f"orus={self.orus} oru_lost={self.oru_lost} oru_dup={self.oru_dup} parked={self.parked} "
            f"resent={self.resent} orders={self.orders} orders_lost={self.orders_lost} "
            f"orders_dup={self.orders_dup}{extra} ({self.seconds:.0f} s)"
        )

    def assert_nothing_lost_or_duplicated(self) -> None:
        """lost == dup == oru_lost == oru_dup == orders_lost == orders_dup == 0."""
        counts = (self.lost, self.dup, self.oru_lost, self.oru_dup, self.orders_lost, self.orders_dup)
        assert counts == (0, 0, 0, 0, 0, 0), self.line()

    @staticmethod
    def markdown(tallies: Iterable[Tally]) -> str:
        """The summary table of ``.run/faults/summary.md``."""
        head = (
            "| scenario | studies | orders | orders_lost | orders_dup | reports | lost | dup | orus | oru_lost | "
            "oru_dup | parked | resent | s | notes |\n"
        )
        rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        rows = "".join(
            f"| {t.scenario} | {t.studies} | {t.orders} | {t.orders_lost} | {t.orders_dup} | {t.reports} | "
            f"{t.lost} | {t.dup} | {t.orus} | {t.oru_lost} | {t.oru_dup} | {t.parked} | {t.resent} | "
            f"{t.seconds:.0f} | "
            f"{' '.join(f'{k}={v}' for k, v in t.notes.items())} |\n"
            for t in tallies
        )
        return "# Fault suite: end-to-end counts\n\n" + head + rule + rows


def _dsn(stack: LocalStack, service: str) -> str:
    return f"postgresql://postgres@{stack.host}:{stack.ports.postgres}/radcds_{service}"


def resource_counts(stack: LocalStack, studies: list[Study], resource_type: str) -> dict[str, int]:
    """Resources of ``resource_type`` reporting stored per Study Instance UID (studies without one are absent)."""
    with psycopg.connect(_dsn(stack, "reporting"), connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT study_instance_uid, count(*) FROM fhir_resources WHERE resource_type = %s "
            "AND study_instance_uid = ANY(%s) GROUP BY study_instance_uid",
            (resource_type, [s.study_uid for s in studies]),
        ).fetchall()
    return {str(uid): int(n) for uid, n in rows}


def report_counts(stack: LocalStack, studies: list[Study]) -> dict[str, int]:
    """DiagnosticReports stored per Study Instance UID (studies without one are absent)."""
    return resource_counts(stack, studies, "DiagnosticReport")


@dataclass(frozen=True, slots=True)
class Queued:
    """One ORU^R01 in reporting's outbound queue."""

    control_id: str
    accession: str
    state: str


def queued_orus(stack: LocalStack, destination: str) -> list[Queued]:
    """Every ORU^R01 reporting queued for ``destination`` (``host:port``), with its OBR-18 and state."""
    with psycopg.connect(_dsn(stack, "reporting"), connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT control_id, state, payload FROM hl7_outbound_messages WHERE destination = %s", (destination,)
        ).fetchall()
    out = []
    for control_id, state, payload in rows:
        message = hl7.parse(payload.replace("\n", "\r"))
        out.append(Queued(str(control_id), str(message.segment("OBR")[18]), str(state)))
    return out


def group_lag(stack: LocalStack, groups: Iterable[str] = CONSUMER_GROUPS) -> int:
    """Records not yet committed by ``groups`` on the topics they consume."""
    admin = KafkaAdminClient(bootstrap_servers=[stack.bootstrap], request_timeout_ms=10_000)
    consumer = KafkaConsumer(bootstrap_servers=[stack.bootstrap], request_timeout_ms=10_000)
    try:
        groups = list(groups)
        offsets = admin.list_group_offsets({group: None for group in groups})
        lag = 0
        for group in groups:
            committed = offsets.get(group) or {}
            if not committed:  # a group that never committed has not started: not drained
                lag += 1
                continue
            partitions = [
                TopicPartition(topic, p)
                for topic in {tp.topic for tp in committed}
                for p in consumer.partitions_for_topic(topic) or ()
            ]  # also the partitions the group has not committed on yet
            ends = consumer.end_offsets(partitions)
            lag += sum(max(0, ends[tp] - max(committed[tp].offset if tp in committed else 0, 0)) for tp in partitions)
        return lag
    finally:
        consumer.close()
        admin.close()


def settle(
    stack: LocalStack, peer: FaultPeer, studies: list[Study], *, destination: str, timeout_s: float = 240.0
) -> None:
    """Until every study has a report, every consumer group has committed everything and no ORU waits in the
    queue; then a little longer, so that a late duplicate would show. Returns on the deadline too (the count
    then shows what is missing)."""
    accessions = {s.accession for s in studies}

    def done() -> bool:
        if len(report_counts(stack, studies)) < len(studies):
            return False
        if group_lag(stack):
            return False
        queued = [q for q in queued_orus(stack, destination) if q.accession in accessions]
        return bool(queued) and all(q.state in ("delivered", "parked") for q in queued)

    with contextlib.suppress(AssertionError):
        eventually(done, timeout_s=timeout_s, interval_s=1.0, what="the stream to settle")
    time.sleep(3)


def count(
    scenario: str,
    stack: LocalStack,
    peer: FaultPeer,
    studies: list[Study],
    *,
    destination: str,
    started: float,
    **notes: Any,
) -> Tally:
    """The end-to-end count of a scenario's studies (the module docstring defines each number)."""
    reports = report_counts(stack, studies)
    orders = resource_counts(stack, studies, "ServiceRequest")
    accessions = {s.accession for s in studies}
    queued = [q for q in queued_orus(stack, destination) if q.accession in accessions]
    receipts = peer.receipts(accessions)
    by_study: dict[str, list[Receipt]] = defaultdict(list)
    for r in receipts:
        by_study[r.accession].append(r)
    queued_ids = {q.control_id for q in queued}
    parked_ids = {q.control_id for q in queued if q.state == "parked"}
    accepted_ids = {r.control_id for r in receipts if r.accepted}
    oru_lost = len(queued_ids - accepted_ids - parked_ids)
    oru_lost += sum(
        1 for s in studies if s.study_uid in reports and not any(q.accession == s.accession for q in queued)
    )
    oru_dup = len(accepted_ids - queued_ids)
    resent = 0
    for got in by_study.values():
        seen: set[str] = set()
        previous: tuple[str, tuple[str, ...]] | None = None
        for r in got:
            if not r.accepted:
                continue
            if r.control_id in seen:
                resent += 1
                continue
            seen.add(r.control_id)
            content = (r.result_status, r.observations)
            if content == previous:
                oru_dup += 1
            previous = content
    return Tally(
        scenario=scenario,
        studies=len(studies),
        reports=len(reports),
        lost=sum(1 for s in studies if s.study_uid not in reports),
        dup=sum(n - 1 for n in reports.values()),
        orus=len({r.accession for r in receipts if r.accepted} | {q.accession for q in queued if q.state == "parked"}),
        oru_lost=oru_lost,
        oru_dup=oru_dup,
        parked=len(parked_ids),
        resent=resent,
        orders=len(orders),
        orders_lost=sum(1 for s in studies if s.study_uid not in orders),
        orders_dup=sum(n - 1 for n in orders.values()),
        seconds=time.monotonic() - started,
        notes=notes,
    )
