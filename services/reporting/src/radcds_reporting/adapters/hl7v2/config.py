"""ORU destinations: ``RADCDS_REPORTING_MLLP_DESTINATIONS`` plus per-destination options from a file.

The environment variable is a comma-separated ``host:port`` list. Options per destination come
from a TOML or JSON file: a ``defaults`` table applied to every destination, and a
``destinations`` table keyed by ``host:port`` that overrides them. Example (TOML)::

    [defaults]
    text_layout = "obx-per-line"
    ack_timeout_s = 30
    max_attempts = 20

    [destinations."mirth.hospital.example:6661"]
    text_layout = "formatted-text"
    receiving_application = "MIRTH"
    receiving_facility = "HOSP"
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from radcds_reporting.adapters.hl7v2.oru import MessageHeader, TextLayout
from radcds_reporting.adapters.hl7v2.outbound import RetryPolicy


class DestinationOptions(BaseModel):
    """Options of one ORU receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_layout: TextLayout = TextLayout.OBX_PER_LINE
    sending_application: str = "RADCDS"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = Field(default="P", pattern="^[PTD]$")
    #: MSH-15/MSH-16; set both to "" for original acknowledgment mode.
    accept_ack_type: str = Field(default="AL", pattern="^(AL|NE|ER|SU|)$")
    application_ack_type: str = Field(default="NE", pattern="^(AL|NE|ER|SU|)$")
    ack_timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=20, ge=1)
    initial_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)

    def header(self) -> MessageHeader:
        """The MSH values for messages to this destination."""
        return MessageHeader(
            sending_application=self.sending_application,
            sending_facility=self.sending_facility,
            receiving_application=self.receiving_application,
            receiving_facility=self.receiving_facility,
            processing_id=self.processing_id,
            accept_ack_type=self.accept_ack_type,
            application_ack_type=self.application_ack_type,
        )

    def retry_policy(self) -> RetryPolicy:
        """Backoff and attempt limit for the delivery worker."""
        return RetryPolicy(
            initial_delay=self.initial_backoff_s, max_delay=self.max_backoff_s, max_attempts=self.max_attempts
        )


class MLLPDestination(BaseModel):
    """One configured receiver: address and options."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    options: DestinationOptions = DestinationOptions()

    @property
    def key(self) -> str:
        """``host:port``, the destination's name in the queue and in the options file."""
        return f"{self.host}:{self.port}"


def parse_destination_list(value: str) -> list[tuple[str, int]]:
    """Split ``"host:port,host2:port"``; raises ``ValueError`` on a malformed or repeated entry."""
    out: list[tuple[str, int]] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"MLLP destination {item!r} is not host:port")
        entry = (host.strip("[]"), int(port))
        if entry in out:
            raise ValueError(f"MLLP destination {item!r} is listed twice")
        out.append(entry)
    return out


def _read_options_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    elif path.suffix.lower() == ".toml":
        data = tomllib.loads(text)
    else:
        raise ValueError(f"{path.name}: MLLP destination options must be .toml or .json")
    if not isinstance(data, dict) or set(data) - {"defaults", "destinations"}:
        raise ValueError(f"{path.name}: expected only 'defaults' and 'destinations' tables")
    return data


def load_destinations(destinations: str, options_file: Path | None = None) -> list[MLLPDestination]:
    """Build the destinations from the env value and the optional options file.

    Options for a ``host:port`` that is not in ``destinations`` are refused (a typo would
    otherwise silently fall back to the defaults).
    """
    data = _read_options_file(options_file) if options_file is not None else {}
    defaults: dict[str, Any] = data.get("defaults", {})
    per_destination: dict[str, dict[str, Any]] = data.get("destinations", {})
    pairs = parse_destination_list(destinations)
    keys = {f"{h}:{p}" for h, p in pairs}
    unknown = set(per_destination) - keys
    if unknown:
        raise ValueError(f"options given for destinations not listed: {', '.join(sorted(unknown))}")
    out = []
    for host, port in pairs:
        try:
            options = DestinationOptions(**(defaults | per_destination.get(f"{host}:{port}", {})))
        except ValidationError as exc:
            raise ValueError(f"MLLP destination {host}:{port}: {exc}") from exc
        out.append(MLLPDestination(host=host, port=port, options=options))
    return out
