"""Settings of the imaging service (env prefix ``RADCDS_IMAGING_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from radcds.runtime.settings import ServiceSettings


class ImagingSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_IMAGING_", extra="ignore")

    http_port: int = Field(default=8082, ge=1, le=65535)
    dimse_port: int = Field(default=11112, ge=1, le=65535)
    ae_title: str = Field(default="RADCDS", min_length=1, max_length=16, pattern=r"^[ -~]*[!-~][ -~]*$")
    dimse_enabled: bool = True
    dimse_host: str = "127.0.0.1"
    #: Calling AE titles allowed to associate (empty: any), JSON list.
    dimse_allowed_calling_aets: list[str] = Field(default_factory=list)
    dimse_max_associations: int = Field(default=10, ge=1, le=200)
    dimse_network_timeout_s: float = Field(default=60.0, gt=0)
    dimse_acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_dimse_timeout_s: float = Field(default=30.0, gt=0)
    #: Transfer syntax UIDs accepted by the C-STORE SCP (None: the documented defaults), JSON list.
    dimse_transfer_syntaxes: list[str] | None = None
    #: Where instance files go: a local folder (``storage_dir``) or an S3-compatible bucket (``s3_*``).
    storage_backend: Literal["filesystem", "s3"] = "filesystem"
    #: Where instances are stored by the filesystem backend (also the SQLite default's folder).
    storage_dir: Path = Path(".run/data/imaging/instances")
    #: S3 endpoint (MinIO, Ceph RGW, S3Proxy); None: AWS S3 itself.
    s3_endpoint_url: str | None = None
    s3_bucket: str = "radcds-dicom"
    #: Key prefix inside the bucket (lets several deployments share one bucket).
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    #: "path" suits most S3-compatible stores; AWS S3 also takes "virtual".
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    #: Static credentials; None: boto3's default chain (AWS_* variables, IRSA web identity, instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    #: Create the bucket at start-up when missing (development; production buckets are provisioned).
    s3_create_bucket: bool = False
    #: SQLAlchemy URL; SQLite under ``storage_dir``'s parent when not given.
    database_url: str | None = None
    #: Base URL other services use to retrieve instances over WADO-RS.
    public_base_url: str = "http://127.0.0.1:8082"
    #: Refuse new instances (0xA700) when the storage volume has less free space than this.
    min_free_bytes: int = Field(default=100 * 1024 * 1024, ge=0)
    min_free_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    #: A study is complete when no new instance arrived for this long (then it is announced).
    study_quiet_period_s: float = Field(default=30.0, ge=0.1)
    #: Largest STOW-RS request body accepted (413 beyond).
    max_request_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)

    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite default."""
        from radcds.adapters.db.engine import sqlite_url

        return self.database_url or sqlite_url(self.storage_dir.parent / "imaging.db")
