"""Settings of the fusion service (env prefix ``RADCDS_FUSION_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from radcds.adapters.db.engine import sqlite_url
from radcds.runtime.settings import ServiceSettings
from radcds_fusion.knowledge import KNOWLEDGE_DIR


class FusionSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_FUSION_", extra="ignore")

    http_port: int = Field(default=8084, ge=1, le=65535)
    #: fusion's own database (its own migration chain); SQLite under ``data_dir`` when unset.
    database_url: str | None = None
    data_dir: Path = Path(".run/data/fusion")
    #: Guidelines, critical-result policy and tracked findings (checked at start-up).
    knowledge_dir: Path = KNOWLEDGE_DIR
    consumer_group: str = "radcds-fusion"
    #: Imaging's DICOMweb root: measurement SRs stored there are read over WADO-RS (unset: not read).
    imaging_dicomweb_url: str | None = Field(default=None, pattern=r"^https?://")
    retrieve_timeout_s: float = Field(default=30.0, gt=0)
    #: How often proposed recommendations past their due date are marked overdue.
    overdue_sweep_interval_s: float = Field(default=300.0, gt=0)

    #: The EHR's FHIR R4 base URL (unset: no EHR context; assessments say so).
    ehr_fhir_base_url: str | None = Field(default=None, pattern=r"^https?://")
    #: SMART Backend Services (client credentials, private_key_jwt), or none (development and test only).
    ehr_auth: Literal["smart-backend-services", "none"] = "smart-backend-services"
    ehr_client_id: str | None = None
    #: PEM file of the private key registered with the EHR (RS384 or ES384), and its key id (JWT ``kid``).
    ehr_private_key_file: Path | None = None
    ehr_key_id: str | None = None
    ehr_algorithm: Literal["RS384", "ES384"] = "RS384"
    #: Token endpoint; unset: discovered from ``{base}/.well-known/smart-configuration``.
    ehr_token_url: str | None = Field(default=None, pattern=r"^https?://")
    #: The EHR's identifier system of the MRN (DICOM Patient ID); unset: matched on the value alone.
    ehr_patient_identifier_system: str | None = None
    ehr_connect_timeout_s: float = Field(default=2.0, gt=0)
    ehr_read_timeout_s: float = Field(default=3.0, gt=0)
    #: Upper bound of one context read (every source together); past it the context names what is missing.
    ehr_budget_s: float = Field(default=5.0, gt=0)
    ehr_cache_ttl_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _check_ehr(self) -> FusionSettings:
        if self.ehr_fhir_base_url is None:
            return self
        if self.ehr_auth == "none" and self.environment == "production":
            raise ValueError("ehr_auth=none is for development and test only: configure SMART Backend Services")
        if self.ehr_auth == "smart-backend-services" and not (
            self.ehr_client_id and self.ehr_private_key_file and self.ehr_key_id
        ):
            raise ValueError("SMART Backend Services needs ehr_client_id, ehr_private_key_file and ehr_key_id")
        return self

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file of fusion's own."""
        return self.database_url or sqlite_url(self.data_dir / "fusion.db")
