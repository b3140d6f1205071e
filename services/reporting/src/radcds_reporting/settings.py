"""Settings of the reporting service (env prefix ``RADCDS_REPORTING_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from radcds.runtime.settings import ServiceSettings
from radcds_reporting.adapters.hl7v2.config import MLLPDestination, load_destinations


class ReportingSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_REPORTING_", extra="ignore")

    http_port: int = Field(default=8085, ge=1, le=65535)
    # --- HL7 v2 over MLLP (HL7 v2.5.1 Appendix C.4): orders in, ORU^R01 out ---
    #: Run the MLLP order listener and the ORU delivery workers in this process. uvicorn worker
    #: processes cannot share the listener port: refused together with ``http_workers`` > 1.
    #: Several replicas may share one database: a lease per destination lets one of them send.
    mllp_enabled: bool = True
    #: Address and TCP port of the order listener (ORM^O01, OMI^O23); port 0 picks a free port (tests).
    mllp_host: str = "0.0.0.0"  # noqa: S104 - RIS systems connect from other hosts
    mllp_port: int = Field(default=2575, ge=0, le=65535)
    #: ORU^R01 receivers, comma-separated ``host:port`` (empty: no ORU is sent).
    mllp_destinations: str = ""
    #: TOML or JSON file with per-destination options (text layout, MSH-5/6, timeouts, backoff).
    mllp_options_file: Path | None = None
    #: IANA time zone of HL7 timestamps that carry no UTC offset (ORC-9, TQ1-7, OBR-36).
    hl7_local_timezone: str = "UTC"
    data_dir: Path = Path(".run/data/reporting")
    #: SQLAlchemy URL; SQLite under ``data_dir`` when not given.
    database_url: str | None = None
    consumer_group: str = "radcds-reporting"
    #: Public FHIR base URL (``fullUrl`` of search bundles, default SMART audience).
    fhir_base_url: str = "http://127.0.0.1:8085/fhir"
    #: Page size of a search without ``_count``, and the largest ``_count`` honoured.
    search_default_count: int = Field(default=50, ge=1, le=1000)
    search_max_count: int = Field(default=200, ge=1, le=1000)

    # --- SMART on FHIR access control of /fhir (SMART App Launch 2.x) ---
    #: ``smart``: every request but ``metadata`` needs a bearer JWT from ``smart_issuer`` with the
    #: right scopes. ``open``: no checks (development and tests only; refused in production).
    auth_mode: Literal["smart", "open"] = "open"
    #: ``iss`` of the authorization server whose access tokens we accept.
    smart_issuer: str = ""
    #: ``aud`` the tokens must carry; empty: ``fhir_base_url``.
    smart_audience: str = ""
    #: Where the issuer's signing keys are (JWKS URL) ...
    smart_jwks_url: str | None = None
    #: ... or one PEM public key file.
    smart_public_key_file: Path | None = None
    smart_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "RS384", "ES256", "ES384"])
    smart_leeway_s: int = Field(default=30, ge=0, le=300)
    #: The authorization server's endpoints, published in ``/fhir/.well-known/smart-configuration`` and the
    #: CapabilityStatement (SMART App Launch 2.x "Conformance"); radcds itself issues no tokens.
    smart_authorize_url: str | None = None
    smart_token_url: str | None = None

    # --- Critical results (ACR Practice Parameter for Communication of Diagnostic Imaging Findings) ---
    #: An unacknowledged critical-result Communication is escalated after this many seconds.
    critical_ack_timeout_s: float = Field(default=3600.0, gt=0)
    #: How often the escalation check runs (0: never in this process).
    critical_check_interval_s: float = Field(default=60.0, ge=0)
    #: Who gets escalations: a FHIR reference ``Type/id`` or a display text.
    critical_escalation_recipient: str = "Radiology department on-call radiologist"
    #: Recipient when the order (and so the ordering clinician) is unknown.
    critical_default_recipient: str = "Ordering clinician's team (order unknown): radiology reading room"

    @model_validator(mode="after")
    def _check_auth(self) -> ReportingSettings:
        if self.auth_mode == "open" and self.environment == "production":
            raise ValueError("auth_mode=open is refused in production: set auth_mode=smart and smart_issuer")
        if self.auth_mode == "smart":
            if not self.smart_issuer:
                raise ValueError("auth_mode=smart needs smart_issuer")
            if (self.smart_jwks_url is None) == (self.smart_public_key_file is None):
                raise ValueError("auth_mode=smart needs exactly one of smart_jwks_url or smart_public_key_file")
            if self.smart_public_key_file is not None and not self.smart_public_key_file.is_file():
                raise ValueError(f"smart_public_key_file {self.smart_public_key_file} does not exist")
            bad = sorted(set(self.smart_algorithms) - {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
            if bad or not self.smart_algorithms:
                raise ValueError(f"smart_algorithms must be RSA or EC signature algorithms, not {bad}")
        if self.mllp_enabled and self.http_workers > 1:
            raise ValueError(
                "mllp_enabled needs http_workers=1: the MLLP listener port belongs to one process (scale with replicas)"
            )
        if self.mllp_options_file is not None and not self.mllp_options_file.is_file():
            raise ValueError(f"mllp_options_file {self.mllp_options_file} does not exist")
        try:
            ZoneInfo(self.hl7_local_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"hl7_local_timezone {self.hl7_local_timezone!r} is not an IANA time zone") from None
        try:
            load_destinations(self.mllp_destinations, self.mllp_options_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"mllp_destinations / mllp_options_file: {exc}") from None
        if self.search_default_count > self.search_max_count:
            raise ValueError("search_default_count must not exceed search_max_count")
        return self

    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        from radcds.adapters.db.engine import sqlite_url

        return self.database_url or sqlite_url(self.data_dir / "reporting.db")

    def destinations(self) -> list[MLLPDestination]:
        """The ORU receivers with their options (validated at start-up)."""
        return load_destinations(self.mllp_destinations, self.mllp_options_file)

    def local_timezone(self) -> ZoneInfo:
        """The time zone of HL7 timestamps without a UTC offset."""
        return ZoneInfo(self.hl7_local_timezone)
