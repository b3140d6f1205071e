"""MLLP framing, the asyncio server and the sender, on loopback sockets (our own components only)."""

from __future__ import annotations

import asyncio

from radcds_devstack.testing import InMemoryReceivedMessageLog
from radcds_reporting.adapters.hl7v2.inbound import OrderInbox
from radcds_reporting.adapters.hl7v2.mllp import (
    BrokenFrame,
    Delivery,
    Frame,
    FrameDecoder,
    FramingProblem,
    MLLPSender,
    MLLPServer,
    frame,
)
from radcds_reporting.adapters.hl7v2.orders import ParsedOrderMessage

from .conftest import ORM_O01_NEW

ORU_LIKE = "MSH|^~\\&|RADCDS|HOSP|RIS|HOSP|20260101120000||ORU^R01^ORU_R01|OUT1|P|2.5.1"


def test_decoder_of_two_blocks_split_across_chunks_returns_both() -> None:
    decoder = FrameDecoder()
    data = frame(b"MSH|one") + frame(b"MSH|two")
    items = decoder.feed(data[:5]) + decoder.feed(data[5:13]) + decoder.feed(data[13:])
    assert items == [Frame(b"MSH|one"), Frame(b"MSH|two")]
    assert not decoder.pending


def test_decoder_skips_garbage_before_start_block_and_reports_unframed_message() -> None:
    decoder = FrameDecoder()
    items = decoder.feed(b"noise MSH|^~\\&|X\r" + frame(b"MSH|ok"))
    assert items == [BrokenFrame(FramingProblem.UNFRAMED, b"MSH|^~\\&|X"), Frame(b"MSH|ok")]


def test_decoder_ignores_whitespace_between_blocks() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"MSH|a") + b"\r\n" + frame(b"MSH|b")) == [Frame(b"MSH|a"), Frame(b"MSH|b")]


def test_decoder_new_start_inside_open_block_reports_unterminated() -> None:
    decoder = FrameDecoder()
    items = decoder.feed(b"\x0bMSH|lost" + frame(b"MSH|next"))
    assert items == [BrokenFrame(FramingProblem.UNTERMINATED, b"MSH|lost"), Frame(b"MSH|next")]


def test_decoder_flush_of_block_missing_end_reports_unterminated() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0bMSH|half") == []
    assert decoder.pending
    assert decoder.flush() == [BrokenFrame(FramingProblem.UNTERMINATED, b"MSH|half")]


def test_decoder_flush_of_block_missing_only_final_cr_returns_the_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x0bMSH|almost\x1c")
    assert decoder.flush() == [Frame(b"MSH|almost")]


def test_decoder_oversized_block_is_reported_and_dropped() -> None:
    decoder = FrameDecoder(max_block_bytes=10)
    items = decoder.feed(b"\x0b" + b"x" * 20)
    assert [type(i) for i in items] == [BrokenFrame] and isinstance(items[0], BrokenFrame)
    assert items[0].problem is FramingProblem.OVERSIZED


class _Sink:
    def __init__(self) -> None:
        self.orders: list[ParsedOrderMessage] = []

    async def accept(self, message: ParsedOrderMessage) -> None:
        self.orders.append(message)


async def _exchange(port: int, payload: bytes, expected_frames: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    decoder, frames = FrameDecoder(), []
    while len(frames) < expected_frames:
        frames += [i.data for i in decoder.feed(await asyncio.wait_for(reader.read(65536), 10)) if isinstance(i, Frame)]
    writer.close()
    return frames


def test_server_answers_many_messages_on_one_connection_and_dedupes() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        sink = _Sink()
        async with MLLPServer(OrderInbox(sink, log=InMemoryReceivedMessageLog())) as server:
            second = ORM_O01_NEW.replace("ORM0001", "ORM0009")
            payload = frame(ORM_O01_NEW.encode()) + frame(second.encode()) + frame(ORM_O01_NEW.encode())
            acks = await _exchange(server.port, payload, 3)
        return acks, len(sink.orders)

    acks, processed = asyncio.run(scenario())
    assert [a.split(b"\rMSA|")[1][:10] for a in acks] == [b"AA|ORM0001", b"AA|ORM0009", b"AA|ORM0001"]
    assert processed == 2


def test_server_answers_garbage_and_missing_end_with_ar_and_keeps_the_connection() -> None:
    async def scenario() -> list[bytes]:
        inbox = OrderInbox(_Sink(), log=InMemoryReceivedMessageLog())
        async with MLLPServer(inbox, frame_timeout=0.2) as server:
            broken = b"junk\x0b" + ORM_O01_NEW.replace("ORM0001", "BROKEN1").encode()  # no end block
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(broken)
            await writer.drain()
            decoder = FrameDecoder()
            first = [i for i in decoder.feed(await asyncio.wait_for(reader.read(65536), 10)) if isinstance(i, Frame)]
            writer.write(frame(ORM_O01_NEW.encode()))
            await writer.drain()
            second: list[Frame] = []
            while not second:
                second = [
                    i for i in decoder.feed(await asyncio.wait_for(reader.read(65536), 10)) if isinstance(i, Frame)
                ]
            writer.close()
            return [f.data for f in first + second]

    first, second = asyncio.run(scenario())
    assert b"MSA|AR|BROKEN1" in first and b"100&Segment sequence error&HL70357" in first
    assert b"MSA|AA|ORM0001" in second


def test_server_answers_bytes_invalid_in_declared_charset_with_ae_at_msh18() -> None:
    bad = ORM_O01_NEW.replace("|P|2.3.1", "|P|2.5.1||||||UNICODE UTF-8").replace("DOE", "D\xd6E").encode("latin-1")

    async def scenario() -> list[bytes]:
        async with MLLPServer(OrderInbox(_Sink(), log=InMemoryReceivedMessageLog())) as server:
            return await _exchange(server.port, frame(bad), 1)

    [ack] = asyncio.run(scenario())
    assert b"MSA|AE|ORM0001" in ack and b"MSH^1^18" in ack


def test_sender_classifies_aa_and_reuses_the_connection() -> None:
    async def scenario() -> tuple[list[Delivery], bool]:
        async with MLLPServer(_AckAll("AA")) as server:
            sender = MLLPSender("127.0.0.1", server.port, ack_timeout=5)
            outcomes = [await sender.send(ORU_LIKE), await sender.send(ORU_LIKE.replace("OUT1", "OUT2"))]
            connected = sender.connected
            await sender.close()
            return [o.delivery for o in outcomes], connected

    deliveries, connected = asyncio.run(scenario())
    assert deliveries == [Delivery.DELIVERED, Delivery.DELIVERED] and connected


def test_sender_classifies_ae_as_rejected_and_ar_as_retry() -> None:
    async def scenario() -> list[Delivery]:
        out = []
        for code in ("AE", "AR", "CA", "CE", "CR"):
            async with MLLPServer(_AckAll(code)) as server:
                sender = MLLPSender("127.0.0.1", server.port, ack_timeout=5)
                out.append((await sender.send(ORU_LIKE)).delivery)
                await sender.close()
        return out

    assert asyncio.run(scenario()) == [
        Delivery.REJECTED,
        Delivery.RETRY,
        Delivery.DELIVERED,
        Delivery.REJECTED,
        Delivery.RETRY,
    ]


def test_sender_without_ack_in_time_returns_retry_and_closes() -> None:
    async def scenario() -> tuple[Delivery, bool]:
        async with MLLPServer(_Silent()) as server:
            sender = MLLPSender("127.0.0.1", server.port, ack_timeout=0.2)
            outcome = await sender.send(ORU_LIKE)
            return outcome.delivery, sender.connected

    delivery, connected = asyncio.run(scenario())
    assert delivery is Delivery.RETRY and not connected


def test_sender_to_closed_port_returns_retry() -> None:
    async def scenario() -> Delivery:
        server = MLLPServer(_Silent())
        await server.start()
        port = server.port
        await server.close()
        return (await MLLPSender("127.0.0.1", port, connect_timeout=2).send(ORU_LIKE)).delivery

    assert asyncio.run(scenario()) is Delivery.RETRY


def test_sender_skips_an_ack_for_another_message() -> None:
    async def scenario() -> Delivery:
        async with MLLPServer(_AckAll("AA", stale_first=True)) as server:
            sender = MLLPSender("127.0.0.1", server.port, ack_timeout=5)
            outcome = await sender.send(ORU_LIKE)
            await sender.close()
            return outcome.delivery

    assert asyncio.run(scenario()) is Delivery.DELIVERED


class _AckAll:
    """An MLLPApplication (our port) answering every message with one fixed code."""

    def __init__(self, code: str, *, stale_first: bool = False) -> None:
        self.code = code
        self.stale_first = stale_first

    async def handle(self, data: bytes) -> list[bytes]:
        control_id = data.split(b"\r")[0].split(b"|")[9]
        ack = b"MSH|^~\\&|RIS|HOSP|RADCDS|HOSP|20260101||ACK^R01^ACK|X|P|2.5.1\rMSA|" + self.code.encode() + b"|"
        stale = [ack + b"OLD-ID"] if self.stale_first else []
        return [*stale, ack + control_id]

    async def handle_broken(self, broken: BrokenFrame) -> list[bytes]:
        return []


class _Silent(_AckAll):
    """Never answers."""

    def __init__(self) -> None:
        super().__init__("AA")

    async def handle(self, data: bytes) -> list[bytes]:
        return []
