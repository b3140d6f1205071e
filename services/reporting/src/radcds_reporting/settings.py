"""Settings of the reporting service (env prefix ``RADCDS_REPORTING_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcds.runtime.settings import ServiceSettings


class ReportingSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_REPORTING_", extra="ignore")

    http_port: int = Field(default=8085, ge=1, le=65535)
    mllp_port: int = Field(default=2575, ge=1, le=65535)
    data_dir: Path = Path(".run/data/reporting")
    #: SQLAlchemy URL; SQLite under ``data_dir`` when not given.
    database_url: str | None = None
    consumer_group: str = "radcds-reporting"
    #: Public FHIR base URL (``fullUrl`` of search bundles).
    fhir_base_url: str = "http://127.0.0.1:8085/fhir"

    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        from radcds.adapters.db.engine import sqlite_url

        return self.database_url or sqlite_url(self.data_dir / "reporting.db")
