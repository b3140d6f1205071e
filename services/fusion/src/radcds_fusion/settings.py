"""Settings of the fusion service (env prefix ``RADCDS_FUSION_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file of fusion's own."""
        return self.database_url or sqlite_url(self.data_dir / "fusion.db")
