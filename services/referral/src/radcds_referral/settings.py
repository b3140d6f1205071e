"""Settings of the referral service (env prefix ``RADCDS_REFERRAL_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from radcds.runtime.resources import shipped_data_dir
from radcds.runtime.settings import ServiceSettings

#: Rule files shipped with the service (``services/referral/knowledge/rules``).
DEFAULT_KNOWLEDGE_DIR = shipped_data_dir(__file__, "knowledge")


class ReferralSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_REFERRAL_", extra="ignore")

    http_port: int = Field(default=8081, ge=1, le=65535)
    #: JSON list of trusted CDS clients: ``[{"iss", "jwks_url" | "jwks", "jku_allowlist"?}]``.
    trusted_issuers_file: Path | None = None
    #: Public base URL EHRs call (``aud`` of their JWTs is this plus ``/cds-services/{id}``).
    public_base_url: str = "http://127.0.0.1:8081"
    knowledge_dir: Path = DEFAULT_KNOWLEDGE_DIR
    data_dir: Path = Path(".run/data/referral")
    database_url: str | None = None
    #: Timeout of one FHIR fallback query to the EHR's ``fhirServer``.
    fhir_timeout_s: float = Field(default=0.3, gt=0, le=10)
    #: Whole-request budget, counted from the call's arrival (radcds_referral.api.shedding): gathering and the fusion
    #: read get what is left; a call with nothing left, or a FHIR fallback past it, is answered ``{"cards": []}``.
    latency_budget_s: float = Field(default=0.45, gt=0, le=10)
    #: Hook calls processed at once by one worker process; one more is answered ``503`` with ``Retry-After: 1`` at
    #: once instead of queueing past the latency budget (load shedding, radcds_referral.api.shedding).
    max_in_flight: int = Field(default=32, ge=1, le=100_000)
    #: Browser origins allowed by CORS (empty: CORS off).
    cors_origins: list[str] = Field(default_factory=list)
    #: fusion's FHIR base (e.g. http://fusion:8084/fhir): patient-view also reads radcds's own follow-up
    #: recommendations there (unset: only the EHR's prefetched ServiceRequests count).
    fusion_fhir_url: str | None = Field(default=None, pattern=r"^https?://")
    #: Time allowed for that read, within the latency budget.
    fusion_timeout_s: float = Field(default=0.2, gt=0, le=10)
    #: Value of the Argonaut ``pama-rating-qcdsm-consulted`` extension (the mechanism's identifier).
    qcdsm_id: str = "radcds-referral"
    #: Link target of card sources.
    source_url: str = "https://radcds.example.org/docs/referral"

    @model_validator(mode="after")
    def _require_trust_outside_development(self) -> ReferralSettings:
        if self.environment == "production" and self.trusted_issuers_file is None:
            raise ValueError("trusted_issuers_file is required in production (every call needs a trusted JWT)")
        if self.trusted_issuers_file is not None and not self.trusted_issuers_file.is_file():
            raise ValueError(f"trusted_issuers_file {self.trusted_issuers_file} does not exist")
        return self

    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        from radcds.adapters.db.engine import sqlite_url

        return self.database_url or sqlite_url(self.data_dir / "referral.db")
