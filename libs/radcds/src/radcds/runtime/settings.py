"""Settings shared by every service; each service subclasses with its own ``RADCDS_<SERVICE>_`` prefix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``model_config`` with their env prefix."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    environment: Literal["development", "test", "production"] = "development"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    #: uvicorn worker processes (only for services without their own listeners: referral, reporting's API).
    http_workers: int = Field(default=1, ge=1, le=16)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_request_timeout_ms: int = Field(default=30_000, ge=1_000)
    #: Broker protocol version ("4.0"). Given explicitly so clients start without probing the broker:
    #: a service starts (and serves what does not need Kafka) while Kafka is still down.
    kafka_api_version: str = Field(default="4.0", pattern=r"^\d+\.\d+$")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    #: CA bundle (PEM) that signed the brokers' certificates, for SSL and SASL_SSL.
    kafka_ssl_cafile: Path | None = None
    #: OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces.
    otlp_endpoint: str | None = None
    #: Append finished spans as JSON lines to this file (local stack and tests).
    trace_file: Path | None = None
    #: Services with a database bring its schema to their newest revision on start. false: a separate step
    #: (``radcds-<service> migrate``, the Helm chart's pre-install/pre-upgrade Job) does it, and the service
    #: refuses to start on a database older than its code.
    migrate_on_start: bool = True
    #: Handler retries for a failing event before it is dead-lettered.
    consumer_max_retries: int = Field(default=3, ge=0, le=20)
    consumer_backoff_initial_s: float = Field(default=0.2, gt=0)
    consumer_backoff_max_s: float = Field(default=10.0, gt=0)

    def kafka_client_options(self) -> dict[str, Any]:
        """kafka-python connection options (security) shared by producers, consumers and admins."""
        options: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "api_version": tuple(int(p) for p in self.kafka_api_version.split(".")),
        }
        if self.kafka_sasl_mechanism:
            options |= {
                "sasl_mechanism": self.kafka_sasl_mechanism,
                "sasl_plain_username": self.kafka_sasl_username,
                "sasl_plain_password": self.kafka_sasl_password.get_secret_value()
                if self.kafka_sasl_password
                else None,
            }
        if self.kafka_ssl_cafile is not None:
            options["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return options

    @model_validator(mode="after")
    def _check_kafka(self) -> ServiceSettings:
        for server in self.kafka_bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"kafka_bootstrap_servers: {server!r} is not host:port")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password")
        return self


def load_settings(cls: type[S]) -> S:
    """Validate settings from the environment, or stop the process with a clear message."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"radcds: invalid configuration for {cls.__name__} (env prefix {prefix}):"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(settings)"
            lines.append(f"  {prefix}{field.upper()}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
