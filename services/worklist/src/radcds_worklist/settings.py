"""Settings of the worklist service (env prefix ``RADCDS_WORKLIST_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from radcds.adapters.db.engine import sqlite_url
from radcds.runtime.settings import ServiceSettings


class WorklistSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_WORKLIST_", extra="ignore")

    http_port: int = Field(default=8086, ge=1, le=65535)
    #: The worklist's own database (its own migration chain); SQLite under ``data_dir`` when unset.
    database_url: str | None = None
    data_dir: Path = Path(".run/data/worklist")
    consumer_group: str = "radcds-worklist"
    #: The URL users open (redirect URIs and links are built from it).
    public_base_url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://")

    #: Reporting's FHIR R4 base: the draft DiagnosticReport is read there and signed there.
    reporting_fhir_url: str = Field(default="http://127.0.0.1:8085/fhir", pattern=r"^https?://")
    #: Imaging's DICOMweb root: the key image (WADO-RS rendered) and the instance metadata (input monitoring).
    imaging_dicomweb_url: str = Field(default="http://127.0.0.1:8082/dicom-web", pattern=r"^https?://")
    #: DICOMweb root the site's viewer reads (defaults to imaging's); the viewer link is built from the template.
    viewer_url_template: str = "/ohif/viewer?StudyInstanceUIDs={study_uid}"
    request_timeout_s: float = Field(default=10.0, gt=0)

    #: Studies on the list's first screen (the most urgent first; filters narrow it).
    page_size: int = Field(default=50, ge=10, le=500)
    #: Reading locks ("assign to me") expire after this long without renewal.
    lock_ttl_s: float = Field(default=900.0, gt=0)
    #: The model manifest (validated envelope, declared input distribution) monitoring compares against.
    model_manifest: Path = Path("models/manifest.json")

    #: ``oidc``: OpenID Connect authorization code flow with PKCE against ``oidc_issuer``;
    #: ``development``: a sign-in form listing the development users (refused in production).
    auth_mode: Literal["oidc", "development"] = "development"
    oidc_issuer: str = ""
    oidc_client_id: str = "radcds-worklist"
    oidc_client_secret: SecretStr | None = None
    oidc_scopes: str = "openid profile fhirUser"
    #: The ID token claim that lists the user's roles (radiologist, viewer, admin).
    oidc_roles_claim: str = "roles"
    #: Signs the session and CSRF cookies; must be set (and secret) outside development.
    session_secret: SecretStr = SecretStr("development-only-session-secret-change-me")
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    #: Send cookies only over HTTPS (on behind a TLS-terminating ingress).
    secure_cookies: bool = False

    @model_validator(mode="after")
    def _check_auth(self) -> WorklistSettings:
        if self.environment == "production":
            if self.auth_mode == "development":
                raise ValueError("auth_mode=development is refused in production: configure oidc_issuer")
            if self.session_secret.get_secret_value().startswith("development-only"):
                raise ValueError("session_secret must be set in production")
        if self.auth_mode == "oidc" and not self.oidc_issuer:
            raise ValueError("auth_mode=oidc needs oidc_issuer")
        return self

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file of the worklist's own."""
        return self.database_url or sqlite_url(self.data_dir / "worklist.db")
