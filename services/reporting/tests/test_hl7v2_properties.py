"""Property-based tests of the HL7 v2 inbound path against hostile input (issue #15, first increment).

* MLLP framing (HL7 v2.5.1 Appendix C.4, ``0x0B`` message ``0x1C 0x0D``): :class:`FrameDecoder` takes any
  byte stream, split anywhere, without raising, and gives back well-formed blocks exactly.
* Acknowledgment (HL7 v2.5.1 2.9.2 original mode, 2.14.1 ACK, 2.15.8 MSA): :meth:`OrderInbox.handle` answers
  any block, and mutations of the real ORM^O01/OMI^O23 samples of ``hl7v2/conftest.py``, with AA, AE or AR,
  MSA-2 echoing a readable MSH-10, and each answer survives MLLP framing.
* Partial state: with the real :class:`OrderStore` on SQLite (no Kafka: ``relay=None``) a message answered
  AE or AR leaves every table of the reporting database as it was.

Profiles (registered in ``conftest.py``): ``ci`` by default, ``HYPOTHESIS_PROFILE=fuzz`` for a long run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from sqlalchemy import Engine, MetaData, Table, func, select

from radcds.adapters.db.engine import make_engine, migrate, sqlite_url
from radcds_devstack.testing import InMemoryReceivedMessageLog
from radcds_reporting.adapters.hl7v2.ack import AckCode, HL7MessageError, ReceivedHeader, parse_ack, parse_msh
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import (
    END_BLOCK,
    START_BLOCK,
    TRAILER,
    BrokenFrame,
    Frame,
    FrameDecoder,
    FramingProblem,
    frame,
)
from radcds_reporting.adapters.hl7v2.orders import ParsedOrderMessage
from radcds_reporting.adapters.hl7v2.received import SqlReceivedMessageLog
from radcds_reporting.use_cases.hl7_orders import OrderStore

from .hl7v2.conftest import OMI_O23_NEW, ORM_O01_CANCEL, ORM_O01_NEW

# python-hl7 logs with the deprecated ``logger.warn``: ignored here, a long fuzz run would collect millions of them.
pytestmark = [
    pytest.mark.properties,
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]

SAMPLES = (ORM_O01_NEW, OMI_O23_NEW, ORM_O01_CANCEL)
CLOCK = datetime(2026, 1, 1, tzinfo=UTC)

# ------------------------------------------------------------------ strategies


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame | BrokenFrame]:
    items: list[Frame | BrokenFrame] = []
    for chunk in chunks:
        items += decoder.feed(chunk)
    return items + decoder.flush()


#: Bytes biased towards the framing characters, CR/LF and the letters of MSH.
hostile_bytes = st.lists(
    st.one_of(
        st.sampled_from([START_BLOCK, END_BLOCK, b"\r", b"\n", b"MSH|^~\\&|", b"\x1c\r"]),
        st.binary(min_size=1, max_size=8),
    ),
    max_size=40,
).map(b"".join)
#: Message bodies that contain no framing character (what a conformant sender puts in a block).
block_bodies = st.binary(max_size=200).map(lambda b: b.replace(START_BLOCK, b"").replace(END_BLOCK, b""))
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@st.composite
def mutated_orders(draw: st.DrawFn) -> bytes:
    """A real order sample, mutated: segments dropped, duplicated, swapped, truncated, bytes inserted, MSH changed."""
    segments = draw(st.sampled_from(SAMPLES)).split("\r")
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        kind = draw(
            st.sampled_from(
                ["drop", "duplicate", "swap", "truncate", "encoding", "msh9", "oversize", "bytes", "field", "lf"]
            )
        )
        if not segments:
            break
        i = draw(st.integers(min_value=0, max_value=len(segments) - 1))
        j = draw(st.integers(min_value=0, max_value=len(segments) - 1))
        if kind == "drop":
            del segments[i]
        elif kind == "duplicate":
            segments.insert(i, segments[i])
        elif kind == "swap":
            segments[i], segments[j] = segments[j], segments[i]
        elif kind == "truncate":
            segments[i] = segments[i][: draw(st.integers(min_value=0, max_value=len(segments[i])))]
        elif kind == "encoding" and segments[0].startswith("MSH"):
            chars = draw(st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), min_size=5, max_size=5))
            segments[0] = "MSH" + chars + segments[0][8:]
        elif kind == "msh9" and segments[0].startswith("MSH"):
            fields = segments[0].split("|")
            if len(fields) > 8:
                fields[8] = draw(st.sampled_from(["ADT^A01", "ORM", "ORM^O02", "OMI^O01", "", "ACK", "ORU^R01"]))
                segments[0] = "|".join(fields)
        elif kind == "oversize":
            fields = segments[i].split("|")
            k = draw(st.integers(min_value=0, max_value=len(fields) - 1))
            fields[k] = fields[k] + draw(st.sampled_from(["X", "^", "~", "&", "\\"])) * draw(
                st.sampled_from([300, 5_000, 70_000])
            )
            segments[i] = "|".join(fields)
        elif kind == "field":
            fields = segments[i].split("|")
            k = draw(st.integers(min_value=0, max_value=len(fields) - 1))
            fields[k] = draw(st.text(max_size=20))
            segments[i] = "|".join(fields)
        elif kind == "lf":
            segments[i] = segments[i] + "\n"
    data = "\r".join(segments).encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.binary(max_size=16)) + data[at:]
    return data


def _as_delivered(data: bytes) -> bytes:
    """What :class:`FrameDecoder` can hand the application: a block never holds 0x0B nor the 0x1C 0x0D trailer."""
    return data.replace(START_BLOCK, b"").replace(TRAILER, END_BLOCK)


#: Any block the MLLP listener can deliver: mutated real orders, hostile bytes, arbitrary text.
any_block = st.one_of(mutated_orders(), hostile_bytes, st.text().map(lambda t: t.encode("utf-8", "surrogatepass"))).map(
    _as_delivered
)

# ------------------------------------------------------------------ MLLP framing


@given(data=hostile_bytes, cut_at=cuts, limit=st.sampled_from([16, 256, 16 * 1024 * 1024]))
def test_any_byte_stream_split_anywhere_gives_only_frames_and_broken_frames_without_raising(
    data: bytes, cut_at: list[int], limit: int
) -> None:
    decoder = FrameDecoder(max_block_bytes=limit)
    items = _feed_all(decoder, _split(data, cut_at))
    assert all(isinstance(i, Frame | BrokenFrame) for i in items)
    assert all(START_BLOCK not in i.data and TRAILER not in i.data for i in items if isinstance(i, Frame))
    assert not decoder.pending


@given(
    bodies=st.lists(block_bodies, max_size=6), gaps=st.lists(st.sampled_from([b"", b"\r", b"\n", b"\r\n"])), cut_at=cuts
)
def test_well_formed_blocks_split_anywhere_come_back_exactly_and_in_order(
    bodies: list[bytes], gaps: list[bytes], cut_at: list[int]
) -> None:
    stream = b"".join(frame(body) + (gaps[n] if n < len(gaps) else b"") for n, body in enumerate(bodies))
    items = _feed_all(FrameDecoder(), _split(stream, cut_at))
    assert items == [Frame(body) for body in bodies]


@given(garbage=hostile_bytes, body=block_bodies, cut_at=cuts)
def test_well_formed_block_after_any_garbage_is_still_decoded_exactly(
    garbage: bytes, body: bytes, cut_at: list[int]
) -> None:
    items = _feed_all(FrameDecoder(), _split(garbage + frame(body), cut_at))
    assert items and items[-1] == Frame(body)


# ------------------------------------------------------------------ acknowledgments


class _Sink:
    """A fake OrderSink (our port) that keeps what it is given."""

    def __init__(self) -> None:
        self.orders: list[ParsedOrderMessage] = []

    async def accept(self, message: ParsedOrderMessage) -> None:
        self.orders.append(message)


def _readable_header(data: bytes) -> ReceivedHeader | None:
    try:
        return parse_msh(data.lstrip(b"\r\n").decode("latin-1"))
    except HL7MessageError:
        return None


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _check_answers(data: bytes, answers: list[bytes]) -> list[AckCode]:
    """Each answer is one well-formed MLLP block and an ACK; original mode gets exactly one AA/AE/AR."""
    header = _readable_header(data)
    codes = []
    for answer in answers:
        assert FrameDecoder().feed(frame(answer)) == [Frame(answer)]
        ack = parse_ack(answer.decode("latin-1"))
        codes.append(ack.code)
        if header is not None and _printable(header.control_id):
            assert ack.acknowledged_control_id == header.control_id
    if header is None or not header.enhanced_mode:
        assert len(codes) == 1 and codes[0] in (AckCode.AA, AckCode.AE, AckCode.AR)
    return codes


#: Found by hypothesis: MSH-1 ``E`` and MSH-2 ``0123`` were echoed, so the ACK's MSA-1 ``AE`` was split at its
#: own ``E`` and no peer could read the answer.
ALPHANUMERIC_DELIMITERS = ORM_O01_NEW.replace("MSH|^~\\&|", "MSHE0123|", 1).encode()
#: Found by hypothesis: MSH-1 byte 0xA1 (read as latin-1) came back UTF-8 encoded, two bytes the sender never used.
NON_ASCII_DELIMITER = b"MSH\xa1" + ORM_O01_NEW.encode()[3:]


@pytest.mark.parametrize("data", [ALPHANUMERIC_DELIMITERS, NON_ASCII_DELIMITER], ids=["alphanumeric", "non-ascii"])
def test_message_with_delimiters_other_than_ascii_punctuation_is_answered_ae_102_at_msh2_in_default_delimiters(
    data: bytes,
) -> None:
    inbox = OrderInbox(_Sink(), log=InMemoryReceivedMessageLog(), clock=lambda: CLOCK)
    [answer] = asyncio.run(inbox.handle(data))
    ack = parse_ack(answer.decode())
    assert answer.startswith(b"MSH|^~\\&|")
    assert (ack.code, ack.error_code, ack.error_location) == (AckCode.AE, "102", "MSH^1^2^1")


def _with_placer_number(placer: str) -> bytes:
    orc = next(s for s in ORM_O01_NEW.split("\r") if s.startswith("ORC|"))
    fields = orc.split("|")
    fields[2] = placer
    return ORM_O01_NEW.replace(orc, "|".join(fields)).encode()


@pytest.mark.parametrize(
    "placer",
    ["PLC\\.sk99999999\\123^EPIC", "PLC123" + "\\" * 70_000 + "^EPIC"],
    ids=["repeat-count-of-a-hundred-million", "35000-empty-escape-sequences"],
)
def test_escape_sequence_python_hl7_would_expand_or_log_is_read_as_text_and_nothing_is_logged(
    placer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by ``make fuzz``: python-hl7's unescape, used by ``extract_field``, logged the whole field for each
    empty escape sequence (35,000 log lines of 70 KB, patient data in the logs) and repeats ``\\.sk<n>\\`` n times
    (a gigabyte string from 15 bytes; a hundred million spaces here). The order is read with radcds's
    unescape: kept as text, in its own size."""
    sink = _Sink()
    inbox = OrderInbox(sink, log=InMemoryReceivedMessageLog(), clock=lambda: CLOCK)
    with caplog.at_level(logging.DEBUG):
        [answer] = asyncio.run(inbox.handle(_with_placer_number(placer)))
    assert parse_ack(answer.decode()).code is AckCode.AA
    [order] = sink.orders
    assert order.order.placer_order_number is not None
    assert len(order.order.placer_order_number.number) <= len(placer)
    assert not [r for r in caplog.records if "PLC" in r.getMessage() or "DOE" in r.getMessage()]


@given(data=any_block)
@example(data=ALPHANUMERIC_DELIMITERS)
@example(data=NON_ASCII_DELIMITER)
@example(data=ORM_O01_NEW.encode())
@example(data=b"")
@example(data=b"MSH|^~\\&")
def test_any_block_is_answered_with_one_ack_echoing_a_readable_msh10(data: bytes) -> None:
    inbox = OrderInbox(_Sink(), log=InMemoryReceivedMessageLog(), clock=lambda: CLOCK)
    answers = asyncio.run(inbox.handle(data))
    _check_answers(data, answers)


@given(data=any_block, problem=st.sampled_from(["unframed", "unterminated", "oversized"]))
def test_any_broken_block_is_answered_with_one_ar(data: bytes, problem: str) -> None:
    inbox = OrderInbox(_Sink(), log=InMemoryReceivedMessageLog(), clock=lambda: CLOCK)
    answers = asyncio.run(inbox.handle_broken(BrokenFrame(FramingProblem(problem), data)))
    for answer in answers:
        assert FrameDecoder().feed(frame(answer)) == [Frame(answer)]
    start = data.find(b"MSH")
    header = _readable_header(data[start:]) if start >= 0 else None
    if header is None or not header.enhanced_mode:
        [answer] = answers
        assert parse_ack(answer.decode("latin-1")).code is AckCode.AR


# ------------------------------------------------------------------ partial state


@pytest.fixture(scope="module")
def order_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, list[Table]]]:
    """One migrated SQLite reporting database and its tables (each example compares row counts before and after)."""
    engine = make_engine(sqlite_url(tmp_path_factory.mktemp("hl7-properties") / "reporting.db"))
    migrate(engine, chain="radcds_reporting.db")
    meta = MetaData()
    meta.reflect(engine)
    yield engine, list(meta.tables.values())
    engine.dispose()


def _row_counts(engine: Engine, tables: list[Table]) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}


@given(data=mutated_orders().map(_as_delivered))
@example(data=ORM_O01_CANCEL.replace("ORM0002", "CANCEL-UNKNOWN").encode())
def test_message_answered_ae_or_ar_by_the_sqlite_order_store_leaves_every_table_unchanged(
    order_db: tuple[Engine, list[Table]], data: bytes
) -> None:
    engine, tables = order_db
    log = SqlReceivedMessageLog(engine, clock=lambda: CLOCK)
    inbox = OrderInbox(OrderStore(engine=engine, log=log), log=log, clock=lambda: CLOCK)
    before = _row_counts(engine, tables)
    codes = _check_answers(data, asyncio.run(inbox.handle(data)))
    event(f"final ack {codes[-1].value if codes else 'none'}")
    if codes and codes[-1] in (AckCode.AE, AckCode.AR):
        assert _row_counts(engine, tables) == before
