"""The fault suite's integration engine: a python-hl7 asyncio MLLP server (``start_hl7_server``) in its own thread
that a scenario can stop, slow down or make answer AE or AR, and that records every ORU^R01 it received with the
acknowledgement code it answered (HL7 v2.5.1 2.9 original acknowledgement mode: AA accepted, AE error, AR
rejected)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import hl7
from hl7.mllp import start_hl7_server


@dataclass(frozen=True, slots=True)
class Receipt:
    """One ORU^R01 as the peer received it: MSH-10, OBR-18 (accession), OBR-25 (result status), the OBX-5 values
    (what the report says) and the code the peer answered."""

    control_id: str
    accession: str
    result_status: str
    observations: tuple[str, ...]
    answered: str

    @property
    def accepted(self) -> bool:
        """The peer took the message (AA), even when its ACK reached the sender too late."""
        return self.answered == "AA"


def receipt_of(message: hl7.Message, answered: str) -> Receipt:
    """The :class:`Receipt` of an ORU^R01."""
    obr = message.segment("OBR")
    observations = tuple(str(s[5]) for s in message if str(s[0]) == "OBX")
    return Receipt(str(message.segment("MSH")[10]), str(obr[18]), str(obr[25]), observations, answered)


class FaultPeer:
    """An MLLP receiver with a switchable behaviour: ``ack`` is the code it answers (AA, AE or AR) and ``delay_s``
    how long it waits before answering; :meth:`stop` and :meth:`start` take it down and bring it back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ack = "AA"
        self.delay_s = 0.0
        self._receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    def behave(self, *, ack: str = "AA", delay_s: float = 0.0) -> None:
        """Answer ``ack`` after ``delay_s`` from the next message on."""
        self.ack, self.delay_s = ack, delay_s

    async def _handle(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                ack, delay = self.ack, self.delay_s
                if delay:
                    await asyncio.sleep(delay)
                with self._lock:
                    self._receipts.append(receipt_of(message, ack))
                writer.writemessage(message.create_ack(ack_code=ack))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def start(self) -> None:
        """Listen on the port (again)."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                start_hl7_server(self._handle, "127.0.0.1", self.port, encoding="utf-8")
            )
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fault-oru-peer", daemon=True)
        self._thread.start()
        assert ready.wait(20), "the ORU peer did not start"

    def stop(self) -> None:
        """Close the port and every open connection (the sender sees the peer down)."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None or server is None or not thread.is_alive():
            return

        async def close() -> None:
            server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # open connections
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = self._server = None

    def receipts(self, accessions: set[str] | None = None) -> list[Receipt]:
        """What the peer received (of those ``accessions``), in order."""
        with self._lock:
            return [r for r in self._receipts if accessions is None or r.accession in accessions]
