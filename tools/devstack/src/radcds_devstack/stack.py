"""The local stack: the infrastructure components (:mod:`radcds_devstack.components`) and the radcds services,
started, probed and stopped together under one run folder."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from radcds_devstack import processes
from radcds_devstack.components.kafka import KafkaBroker
from radcds_devstack.components.oidc import OidcProvider
from radcds_devstack.components.postgres import PostgresCluster
from radcds_devstack.components.s3proxy import S3_DEV_CREDENTIALS, S3Proxy
from radcds_devstack.components.triton import TritonServer

SERVICES = ("imaging", "inference", "reporting", "referral", "fusion", "worklist")
#: One database per service: each service's own migration chain creates its tables there.
DATABASES = SERVICES
#: Issuer of the development EHR whose key `make run` generates and the referral service trusts.
DEV_ISSUER = "https://ehr.radcds.local/dev"
#: The services that read Triton (started only when the stack runs Triton).
TRITON_SERVICES = ("inference",)

__all__ = ["DATABASES", "DEV_ISSUER", "S3_DEV_CREDENTIALS", "SERVICES", "LocalStack", "Ports"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Ports:
    """Ports of the stack; each can be overridden by the environment variable in its comment."""

    kafka: int = 19092  # RADCDS_KAFKA_PORT
    kafka_controller: int = 19093  # RADCDS_KAFKA_CONTROLLER_PORT
    triton_http: int = 8000  # RADCDS_TRITON_HTTP_PORT
    triton_grpc: int = 8001  # RADCDS_TRITON_GRPC_PORT
    triton_metrics: int = 8002  # RADCDS_TRITON_METRICS_PORT
    imaging: int = 8082  # RADCDS_IMAGING_HTTP_PORT
    inference: int = 8083  # RADCDS_INFERENCE_HTTP_PORT
    inference_grpc: int = 50051  # RADCDS_INFERENCE_GRPC_PORT
    dimse: int = 11112  # RADCDS_IMAGING_DIMSE_PORT
    reporting: int = 8085  # RADCDS_REPORTING_HTTP_PORT
    reporting_mllp: int = 12575  # RADCDS_REPORTING_MLLP_PORT (HL7 v2 orders in)
    referral: int = 8081  # RADCDS_REFERRAL_HTTP_PORT
    fusion: int = 8084  # RADCDS_FUSION_HTTP_PORT
    worklist: int = 8086  # RADCDS_WORKLIST_HTTP_PORT
    oidc: int = 8090  # RADCDS_OIDC_PORT (the worklist's OpenID Provider)
    postgres: int = 55432  # RADCDS_POSTGRES_PORT
    s3: int = 19000  # RADCDS_S3_PORT (S3Proxy, only when imaging stores in S3)

    @classmethod
    def from_env(cls) -> Ports:
        """Defaults overridden by ``RADCDS_*`` variables."""
        d = cls()
        return cls(
            kafka=_env_int("RADCDS_KAFKA_PORT", d.kafka),
            kafka_controller=_env_int("RADCDS_KAFKA_CONTROLLER_PORT", d.kafka_controller),
            triton_http=_env_int("RADCDS_TRITON_HTTP_PORT", d.triton_http),
            triton_grpc=_env_int("RADCDS_TRITON_GRPC_PORT", d.triton_grpc),
            triton_metrics=_env_int("RADCDS_TRITON_METRICS_PORT", d.triton_metrics),
            imaging=_env_int("RADCDS_IMAGING_HTTP_PORT", d.imaging),
            inference=_env_int("RADCDS_INFERENCE_HTTP_PORT", d.inference),
            inference_grpc=_env_int("RADCDS_INFERENCE_GRPC_PORT", d.inference_grpc),
            dimse=_env_int("RADCDS_IMAGING_DIMSE_PORT", d.dimse),
            reporting=_env_int("RADCDS_REPORTING_HTTP_PORT", d.reporting),
            reporting_mllp=_env_int("RADCDS_REPORTING_MLLP_PORT", d.reporting_mllp),
            referral=_env_int("RADCDS_REFERRAL_HTTP_PORT", d.referral),
            fusion=_env_int("RADCDS_FUSION_HTTP_PORT", d.fusion),
            worklist=_env_int("RADCDS_WORKLIST_HTTP_PORT", d.worklist),
            oidc=_env_int("RADCDS_OIDC_PORT", d.oidc),
            postgres=_env_int("RADCDS_POSTGRES_PORT", d.postgres),
            s3=_env_int("RADCDS_S3_PORT", d.s3),
        )

    def http(self, service: str) -> int:
        """HTTP port of a radcds service."""
        return int(getattr(self, service))


@dataclass
class LocalStack:
    """One local stack rooted at the repository, with its own run folder and ports. ``postgres``: the services
    keep their data in PostgreSQL (one database each) instead of SQLite files; ``triton``: Triton runs, and with
    it the inference service."""

    root: Path
    run_dir: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    postgres: bool = False
    triton: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The model repository Triton serves (default: the checkout's ``models/``; `make images-test`: the one
    #: copied out of the models image).
    model_repository: Path | None = None

    # ---- components ----------------------------------------------------------------------
    @cached_property
    def kafka_broker(self) -> KafkaBroker:
        """The Kafka KRaft node."""
        return KafkaBroker(self.root, self.run_dir, self.host, self.ports.kafka, self.ports.kafka_controller)

    @cached_property
    def triton_server(self) -> TritonServer:
        """Triton on ``models/``."""
        p = self.ports
        return TritonServer(
            self.root,
            self.run_dir,
            self.host,
            p.triton_http,
            p.triton_grpc,
            p.triton_metrics,
            model_repository=self.model_repository,
        )

    @cached_property
    def postgres_cluster(self) -> PostgresCluster:
        """The PostgreSQL cluster (started only when ``postgres``)."""
        return PostgresCluster(self.run_dir, self.host, self.ports.postgres, DATABASES)

    def s3_proxy(self, *, name: str = "s3proxy", port: int | None = None) -> S3Proxy:
        """An S3Proxy (the stack's own on ``ports.s3``, or another one a test runs)."""
        return S3Proxy(self.root, self.run_dir, self.host, port or self.ports.s3, name=name)

    @cached_property
    def oidc_provider(self) -> OidcProvider:
        """The worklist's OpenID Provider (npm oidc-provider), redirecting back to the worklist's callback."""
        callback = f"http://{self.host}:{self.ports.worklist}/auth/callback"
        return OidcProvider(self.root, self.run_dir, self.host, self.ports.oidc, (callback,))

    @property
    def bootstrap(self) -> str:
        """Kafka's bootstrap servers."""
        return self.kafka_broker.bootstrap

    def database_url(self, service: str) -> str | None:
        """PostgreSQL URL of a service's database when the stack runs PostgreSQL."""
        return self.postgres_cluster.database_url(service) if self.postgres else None

    def uses_s3(self) -> bool:
        """True when imaging is configured (by the caller's environment or ``extra_env``) to store in S3."""
        key = "RADCDS_IMAGING_STORAGE_BACKEND"
        return (self.extra_env.get(key) or os.environ.get(key, "")).lower() == "s3"

    def services(self) -> tuple[str, ...]:
        """The radcds services this stack runs (inference only with Triton)."""
        return tuple(s for s in SERVICES if self.triton or s not in TRITON_SERVICES)

    # ---- radcds services -----------------------------------------------------------------
    def service_env(self, service: str) -> dict[str, str]:
        """Environment of a service: our defaults, overridden by any RADCDS_* of the caller."""
        p = f"RADCDS_{service.upper()}_"
        data = self.run_dir / "data" / service
        defaults = {
            f"{p}HTTP_HOST": self.host,
            f"{p}HTTP_PORT": str(self.ports.http(service)),
            f"{p}KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            f"{p}TRACE_FILE": str(self.run_dir / "traces" / f"{service}.jsonl"),
        }
        db = self.database_url(service)
        if service == "imaging":
            defaults[f"{p}STORAGE_DIR"] = str(data / "instances")
            defaults[f"{p}PUBLIC_BASE_URL"] = f"http://{self.host}:{self.ports.imaging}"
            defaults[f"{p}DIMSE_PORT"] = str(self.ports.dimse)
            defaults[f"{p}STUDY_QUIET_PERIOD_S"] = "5"
            if self.uses_s3():
                defaults[f"{p}S3_ENDPOINT_URL"] = self.s3_proxy().endpoint
                defaults[f"{p}S3_ACCESS_KEY_ID"], defaults[f"{p}S3_SECRET_ACCESS_KEY"] = S3_DEV_CREDENTIALS
                defaults[f"{p}S3_CREATE_BUCKET"] = "true"
        if service == "inference":
            defaults[f"{p}TRITON_URL"] = f"{self.host}:{self.ports.triton_grpc}"
            defaults[f"{p}GRPC_PORT"] = str(self.ports.inference_grpc)
            defaults[f"{p}IMAGING_DICOMWEB_URL"] = f"http://{self.host}:{self.ports.imaging}/dicom-web"
            defaults[f"{p}MODEL_REPOSITORY"] = str(self.root / "models")
            # Triton runs on this host: tensors travel through system shared memory.
            defaults[f"{p}TRITON_SHARED_MEMORY"] = "system"
        if service == "reporting":
            defaults[f"{p}DATA_DIR"] = str(data)
            defaults[f"{p}FHIR_BASE_URL"] = f"http://{self.host}:{self.ports.reporting}/fhir"
            defaults[f"{p}MLLP_HOST"] = self.host
            defaults[f"{p}MLLP_PORT"] = str(self.ports.reporting_mllp)
        if service == "referral":
            defaults[f"{p}DATA_DIR"] = str(data)
            defaults[f"{p}PUBLIC_BASE_URL"] = f"http://{self.host}:{self.ports.referral}"
            defaults[f"{p}TRUSTED_ISSUERS_FILE"] = str(self.dev_issuer()[1])
            defaults[f"{p}FUSION_FHIR_URL"] = f"http://{self.host}:{self.ports.fusion}/fhir"
        if service == "fusion":
            defaults[f"{p}DATA_DIR"] = str(data)
            defaults[f"{p}IMAGING_DICOMWEB_URL"] = f"http://{self.host}:{self.ports.imaging}/dicom-web"
        if service == "worklist":
            defaults[f"{p}DATA_DIR"] = str(data)
            defaults[f"{p}PUBLIC_BASE_URL"] = f"http://{self.host}:{self.ports.worklist}"
            defaults[f"{p}REPORTING_FHIR_URL"] = f"http://{self.host}:{self.ports.reporting}/fhir"
            defaults[f"{p}IMAGING_DICOMWEB_URL"] = f"http://{self.host}:{self.ports.imaging}/dicom-web"
            defaults[f"{p}MODEL_MANIFEST"] = str(self.root / "models" / "manifest.json")
            defaults[f"{p}AUTH_MODE"] = "oidc"
            defaults[f"{p}OIDC_ISSUER"] = self.oidc_provider.issuer
        if db and service in ("imaging", "reporting", "referral", "fusion", "worklist"):
            defaults[f"{p}DATABASE_URL"] = db
        env = dict(os.environ)
        for key, value in defaults.items():
            env.setdefault(key, value)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def dev_issuer(self) -> tuple[Path, Path]:
        """The development EHR's private key and the trusted-issuers file naming it (made once)."""
        from radcds_devstack.devkeys import DEV_ISSUERS_FILE_NAME, DEV_KEY_FILE_NAME, write_dev_issuer

        directory = self.run_dir / "dev-issuer"
        key, issuers = directory / DEV_KEY_FILE_NAME, directory / DEV_ISSUERS_FILE_NAME
        if not (key.exists() and issuers.exists()):
            key, issuers = write_dev_issuer(directory, DEV_ISSUER)
        return key, issuers

    def start_service(self, service: str) -> None:
        """Start one radcds service from this Python environment."""
        processes.start(
            service,
            [sys.executable, "-m", f"radcds_{service}"],
            run_dir=self.run_dir,
            env=self.service_env(service),
            cwd=self.root,
        )

    def wait_service(self, service: str, timeout_s: float = 90.0) -> None:
        """Wait for the service's ``/readyz``."""
        url = f"http://{self.host}:{self.ports.http(service)}/readyz"
        processes.wait_until(
            lambda: processes.http_ok(url), timeout_s=timeout_s, what=f"radcds {service}", alive=(service, self.run_dir)
        )

    # ---- whole stack ---------------------------------------------------------------------
    def up(self, *, services: tuple[str, ...] | None = None) -> None:
        """Start everything (or ``services`` and the infrastructure) and wait until every component is ready."""
        services = self.services() if services is None else services
        try:
            self.kafka_broker.start()
            if "worklist" in services:
                self.oidc_provider.start()
            if self.triton:
                self.triton_server.start()
            if self.uses_s3():
                self.s3_proxy().start()
                self.s3_proxy().wait()
            if self.postgres:
                self.postgres_cluster.start()
                self.postgres_cluster.wait()
            self.kafka_broker.wait()
            if "worklist" in services:
                self.oidc_provider.wait()
            if self.triton:
                self.triton_server.wait()
            for service in services:
                self.start_service(service)
            for service in services:
                self.wait_service(service)
        except BaseException:
            self.down()
            raise

    def down(self) -> list[str]:
        """Stop services first, then infrastructure; returns what was stopped."""
        stopped = []
        for name in (*reversed(SERVICES), "oidc", "triton", "kafka", "postgres", "s3proxy"):
            if processes.stop(name, self.run_dir):
                stopped.append(name)
        return stopped

    def discard_postgres_data(self) -> None:
        """Remove the PostgreSQL cluster's data (after :meth:`down`)."""
        self.postgres_cluster.discard_data()
