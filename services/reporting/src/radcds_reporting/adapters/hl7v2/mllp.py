"""MLLP, the HL7 Minimal Lower Layer Protocol (HL7 v2.5.1 Appendix C.4): ``0x0B`` message ``0x1C 0x0D``.

* :class:`FrameDecoder` — a sans-IO stream decoder that survives broken framing: bytes before a
  start block are skipped (and reported when they look like a message), a new start block inside
  an open block ends the open one as broken, and an oversized block is cut off.
* :class:`MLLPServer` — an asyncio listener that keeps each connection open for many messages,
  answers every frame through an :class:`MLLPApplication` and answers broken frames too, rather
  than dropping the connection, whenever it can find an MSH to answer.
* :class:`MLLPSender` — a persistent client connection with exactly one message in flight that
  waits for the ACK with a timeout and classifies the outcome (:class:`Delivery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from radcds_reporting.adapters.hl7v2.ack import AckCode, ReceivedAck, parse_ack, parse_msh

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
TRAILER = END_BLOCK + CARRIAGE_RETURN

logger = logging.getLogger(__name__)


def frame(message: bytes) -> bytes:
    """Wrap one encoded message in an MLLP block."""
    return START_BLOCK + message + TRAILER


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete block: the message bytes without the framing characters."""

    data: bytes


class FramingProblem(StrEnum):
    """Why bytes were not a well-formed block."""

    #: Bytes outside any block (before a start block) that contain an MSH: a message sent unframed.
    UNFRAMED = "unframed"
    #: A block that never ended: a new start block arrived, the peer went quiet, or the stream ended.
    UNTERMINATED = "unterminated"
    #: A block longer than the decoder's limit.
    OVERSIZED = "oversized"


@dataclass(frozen=True, slots=True)
class BrokenFrame:
    """Bytes that could not be read as one block; ``data`` may still hold an MSH worth answering."""

    problem: FramingProblem
    data: bytes


DecodedItem = Frame | BrokenFrame


@dataclass
class FrameDecoder:
    """Split a byte stream into MLLP blocks (sans-IO: feed bytes, get blocks and problems)."""

    max_block_bytes: int = 16 * 1024 * 1024
    _buffer: bytearray = field(default_factory=bytearray)
    _in_block: bool = False

    def feed(self, data: bytes) -> list[DecodedItem]:
        """Add received bytes; return every complete block and every problem found so far."""
        self._buffer += data
        out: list[DecodedItem] = []
        while True:
            if not self._in_block:
                start = self._buffer.find(START_BLOCK)
                if start < 0:
                    # Stray bytes: whitespace between blocks is dropped; anything else waits for a start
                    # block or for the peer to go quiet (flush), then is answered if it holds an MSH.
                    stripped = self._buffer.lstrip(b"\r\n\t \x1c")
                    del self._buffer[: len(self._buffer) - len(stripped)]
                    if len(self._buffer) > self.max_block_bytes:
                        self._flush_unframed(out)
                    return out
                if start:
                    self._report_unframed(bytes(self._buffer[:start]), out)
                del self._buffer[: start + 1]
                self._in_block = True
            end = self._buffer.find(TRAILER)
            restart = self._buffer.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):
                out.append(BrokenFrame(FramingProblem.UNTERMINATED, bytes(self._buffer[:restart])))
                del self._buffer[:restart]
                self._in_block = False
                continue
            if end < 0:
                if len(self._buffer) > self.max_block_bytes:
                    out.append(BrokenFrame(FramingProblem.OVERSIZED, bytes(self._buffer[:4096])))
                    self._buffer.clear()
                    self._in_block = False
                return out
            out.append(Frame(bytes(self._buffer[:end])))
            del self._buffer[: end + len(TRAILER)]
            self._in_block = False

    def _flush_unframed(self, out: list[DecodedItem]) -> None:
        if self._buffer:
            self._report_unframed(bytes(self._buffer), out)
            self._buffer.clear()

    @staticmethod
    def _report_unframed(data: bytes, out: list[DecodedItem]) -> None:
        cleaned = data.strip(b"\r\n\t \x1c")
        if b"MSH" in cleaned:
            out.append(BrokenFrame(FramingProblem.UNFRAMED, cleaned[cleaned.find(b"MSH") :]))

    def flush(self) -> list[DecodedItem]:
        """End of input or a quiet peer: report an open block or stray bytes as broken."""
        out: list[DecodedItem] = []
        if self._in_block:
            if self._buffer.endswith(END_BLOCK):
                # End block without the final CR: lenient, the message itself is complete.
                out.append(Frame(bytes(self._buffer[:-1])))
            elif self._buffer:
                out.append(BrokenFrame(FramingProblem.UNTERMINATED, bytes(self._buffer)))
            self._buffer.clear()
            self._in_block = False
        else:
            self._flush_unframed(out)
        return out

    @property
    def pending(self) -> bool:
        """True while bytes of an unfinished block (or stray text) are buffered."""
        return bool(self._buffer) or self._in_block


class MLLPApplication(Protocol):
    """What the server calls with each received block; returns the encoded answers to send back, in order."""

    async def handle(self, data: bytes) -> list[bytes]:
        """Answer one complete block (usually one ACK; two in enhanced mode)."""

    async def handle_broken(self, broken: BrokenFrame) -> list[bytes]:
        """Answer bytes that were not a well-formed block (AR when an MSH can be found, else nothing)."""


class MLLPServer:
    """An asyncio MLLP listener: one task per connection, many messages per connection, one at a time.

    A block that stays open for ``frame_timeout`` seconds with no new bytes is treated as broken
    (missing end block) and answered; the connection stays open. Connections are closed only by
    the peer, by :meth:`close`, or after ``idle_timeout`` seconds without traffic when set.
    """

    def __init__(
        self,
        application: MLLPApplication,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        frame_timeout: float = 5.0,
        idle_timeout: float | None = None,
        max_block_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._application = application
        self._host = host
        self._port = port
        self._frame_timeout = frame_timeout
        self._idle_timeout = idle_timeout
        self._max_block_bytes = max_block_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(self._serve_connection, self._host, self._port)

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, close open connections and wait for their tasks."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MLLPServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        decoder = FrameDecoder(max_block_bytes=self._max_block_bytes)
        peer = writer.get_extra_info("peername")
        logger.info("mllp connection opened", extra={"peer": str(peer)})
        try:
            while True:
                timeout = self._frame_timeout if decoder.pending else self._idle_timeout
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=timeout)
                except TimeoutError:
                    if decoder.pending:
                        await self._answer(decoder.flush(), writer)
                        continue
                    break  # idle timeout
                if not data:
                    await self._answer(decoder.flush(), writer, closing=True)
                    break
                await self._answer(decoder.feed(data), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # close(): the server shuts down; ending quietly keeps asyncio's stream callback from logging it
        finally:
            logger.info("mllp connection closed", extra={"peer": str(peer)})
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _answer(self, items: list[DecodedItem], writer: asyncio.StreamWriter, *, closing: bool = False) -> None:
        for item in items:
            try:
                if isinstance(item, Frame):
                    answers = await self._application.handle(item.data)
                else:
                    logger.warning("mllp framing problem", extra={"problem": item.problem.value})
                    answers = await self._application.handle_broken(item)
            except Exception:
                logger.exception("mllp application failed")
                answers = []
            if closing:
                continue
            for answer in answers:
                writer.write(frame(answer))
            await writer.drain()


class Delivery(StrEnum):
    """How a send ended, and what the queue does next."""

    #: AA or CA: the receiver has it.
    DELIVERED = "delivered"
    #: AE or CE: content the receiver refuses; resending it unchanged will not help (park it).
    REJECTED = "rejected"
    #: AR, CR, no ACK in time, or no connection: send the same message (same MSH-10) again later.
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The classified result of one send."""

    delivery: Delivery
    ack: ReceivedAck | None = None
    reason: str = ""


def classify(ack: ReceivedAck) -> Delivery:
    """AA/CA delivered; AE/CE rejected (do not resend unchanged); AR/CR retry (2.9.2, 2.9.3)."""
    if ack.code in (AckCode.AA, AckCode.CA):
        return Delivery.DELIVERED
    if ack.code in (AckCode.AE, AckCode.CE):
        return Delivery.REJECTED
    return Delivery.RETRY


class MLLPSender:
    """A persistent MLLP client: connects when needed, one message in flight, waits for its ACK.

    ACKs whose MSA-2 does not name the message in flight (late answers to an earlier try, or an
    enhanced-mode application ACK after its commit ACK) are skipped. A timeout or a connection
    error closes the connection, so the next send starts on a fresh one and no late ACK is
    mistaken for a new one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ack_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        encoding: str = "utf-8",
        opener: Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.encoding = encoding
        self._opener = opener or (lambda h, p: asyncio.open_connection(h, p))
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder()
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._writer is not None and not self._writer.is_closing()

    async def close(self) -> None:
        """Close the connection (the next send reconnects)."""
        writer, self._reader, self._writer = self._writer, None, None
        self._decoder = FrameDecoder()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def send(self, message: str) -> SendOutcome:
        """Send ``message`` and wait for the ACK that names its MSH-10; never raises for network trouble."""
        control_id = parse_msh(message).control_id
        payload = frame(message.encode(self.encoding))
        async with self._lock:
            try:
                if not self.connected:
                    self._reader, self._writer = await asyncio.wait_for(
                        self._opener(self.host, self.port), timeout=self.connect_timeout
                    )
                    self._decoder = FrameDecoder()
                assert self._writer is not None and self._reader is not None
                self._writer.write(payload)
                await self._writer.drain()
                ack = await asyncio.wait_for(self._read_ack(control_id), timeout=self.ack_timeout)
            except TimeoutError:
                await self.close()
                return SendOutcome(Delivery.RETRY, reason="no acknowledgment before the timeout")
            except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                await self.close()
                return SendOutcome(Delivery.RETRY, reason=f"connection failed: {type(exc).__name__}")
        if ack is None:
            await self.close()
            return SendOutcome(Delivery.RETRY, reason="connection closed before an acknowledgment")
        return SendOutcome(classify(ack), ack=ack, reason=ack.text)

    async def _read_ack(self, control_id: str) -> ReceivedAck | None:
        assert self._reader is not None
        while True:
            data = await self._reader.read(65536)
            if not data:
                return None
            for item in self._decoder.feed(data):
                if not isinstance(item, Frame):
                    continue
                try:
                    ack = parse_ack(item.data.decode(self.encoding, errors="replace"))
                except ValueError:
                    logger.warning("mllp peer sent something that is not an acknowledgment")
                    continue
                if ack.acknowledged_control_id != control_id:
                    logger.info("mllp skipped an acknowledgment for another message")
                    continue
                return ack
