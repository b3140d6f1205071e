"""Components of the local stack and how each is started and probed."""

from __future__ import annotations

import base64
import glob
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from radcds.devstack import processes

SERVICES = ("imaging", "inference", "reporting", "referral", "fusion")
#: One database per service (fusion's holds its own migration chain).
DATABASES = SERVICES
#: Issuer of the development EHR whose key `make run` generates and the referral service trusts.
DEV_ISSUER = "https://ehr.radcds.local/dev"


#: Access key and secret of the local S3Proxy (development and tests only; never used elsewhere).
S3_DEV_CREDENTIALS = ("radcds-dev", "radcds-dev-secret")


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
            postgres=_env_int("RADCDS_POSTGRES_PORT", d.postgres),
            s3=_env_int("RADCDS_S3_PORT", d.s3),
        )

    def http(self, service: str) -> int:
        """HTTP port of a radcds service."""
        return int(getattr(self, service))


@dataclass
class LocalStack:
    """One local stack rooted at the repository, with its own run folder and ports."""

    root: Path
    run_dir: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    postgres: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    # ---- paths -------------------------------------------------------------------------
    @property
    def kafka_lib(self) -> Path:
        return self.root / ".cache" / "kafka" / "lib"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.ports.kafka}"

    def database_url(self, service: str) -> str | None:
        """PostgreSQL URL of a service's database when the stack runs PostgreSQL."""
        if not self.postgres:
            return None
        return f"postgresql+psycopg://postgres@{self.host}:{self.ports.postgres}/radcds_{service}"

    # ---- S3Proxy (the local S3-compatible store) -----------------------------------------
    @property
    def s3_lib(self) -> Path:
        return self.root / ".cache" / "s3proxy" / "lib"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.ports.s3}"

    def uses_s3(self) -> bool:
        """True when imaging is configured (by the caller's environment or ``extra_env``) to store in S3."""
        key = "RADCDS_IMAGING_STORAGE_BACKEND"
        return (self.extra_env.get(key) or os.environ.get(key, "")).lower() == "s3"

    def start_s3proxy(self, *, name: str = "s3proxy", port: int | None = None) -> None:
        """S3Proxy on its filesystem backend under the run folder (credentials in :data:`S3_DEV_CREDENTIALS`)."""
        if not any(self.s3_lib.glob("s3proxy-*.jar")):
            raise RuntimeError(f"S3Proxy jars missing in {self.s3_lib}: run `make deps`")
        home = self.run_dir / name
        (home / "data").mkdir(parents=True, exist_ok=True)
        props = home / "s3proxy.properties"
        identity, credential = S3_DEV_CREDENTIALS
        props.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint=http://{self.host}:{port or self.ports.s3}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={identity}",
                    f"s3proxy.credential={credential}",
                    "jclouds.provider=filesystem",
                    f"jclouds.filesystem.basedir={home / 'data'}",
                    "",
                ]
            )
        )
        java = shutil.which("java") or "java"
        jopts = ["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
        processes.start(
            name,
            [java, *jopts, "-cp", f"{self.s3_lib}/*", "org.gaul.s3proxy.Main", "--properties", str(props)],
            run_dir=self.run_dir,
            env={**os.environ, "LOG_LEVEL": "warn"},
            cwd=self.root,
        )

    def wait_s3proxy(self, *, name: str = "s3proxy", port: int | None = None, timeout_s: float = 60.0) -> None:
        """Wait until S3Proxy accepts connections."""
        processes.wait_until(
            lambda: processes.port_open(self.host, port or self.ports.s3),
            timeout_s=timeout_s,
            what="S3Proxy",
            alive=(name, self.run_dir),
        )

    # ---- Kafka ---------------------------------------------------------------------------
    def start_kafka(self) -> None:
        """Apache Kafka 4.x in KRaft mode, one node acting as broker and controller."""
        if not any(self.kafka_lib.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"Kafka jars missing in {self.kafka_lib}: run `make deps`")
        home = self.run_dir / "kafka"
        (home / "data").mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={self.host}:{self.ports.kafka_controller}",
                    f"listeners=PLAINTEXT://{self.host}:{self.ports.kafka},CONTROLLER://{self.host}:{self.ports.kafka_controller}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.ports.kafka}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={home / 'data'}",
                    "num.partitions=6",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.cleaner.dedupe.buffer.size=16777216",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        log4j = home / "log4j2.properties"
        log4j.write_text(
            "\n".join(
                [
                    "status=warn",
                    "appender.console.type=Console",
                    "appender.console.name=STDOUT",
                    "appender.console.layout.type=PatternLayout",
                    "appender.console.layout.pattern=[%d] %p %m (%c)%n",
                    "rootLogger.level=WARN",
                    "rootLogger.appenderRef.stdout.ref=STDOUT",
                    "logger.kafka.name=kafka.server.KafkaRaftServer",
                    "logger.kafka.level=INFO",
                    "",
                ]
            )
        )
        java = shutil.which("java") or "java"
        cp = f"{self.kafka_lib}/*"
        if not (home / "data" / "meta.properties").exists():
            # A KRaft cluster id is a UUID in URL-safe base64 without padding (22 characters).
            # A leading "-" would be read as a command-line option by StorageTool: draw again.
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            subprocess.run(
                [
                    java,
                    "-cp",
                    cp,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                check=True,
                capture_output=True,
            )
        jopts = [
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile=file:{log4j}",
        ]
        processes.start(
            "kafka",
            [java, *jopts, "-cp", cp, "kafka.Kafka", str(props)],
            run_dir=self.run_dir,
            env=dict(os.environ),
            cwd=self.root,
        )

    def wait_kafka(self, timeout_s: float = 120.0) -> None:
        """Wait for DescribeCluster to answer, then create the radcds topics."""
        from radcds.adapters.kafka.admin import ensure_topics, radcds_topics, wait_for_cluster

        processes.wait_until(
            lambda: processes.port_open(self.host, self.ports.kafka),
            timeout_s=timeout_s,
            what="Kafka port",
            alive=("kafka", self.run_dir),
        )
        wait_for_cluster(self.bootstrap, timeout_s=timeout_s)
        ensure_topics(self.bootstrap, radcds_topics())

    # ---- Triton --------------------------------------------------------------------------
    def _triton_paths(self) -> tuple[Path, Path, Path]:
        site = Path(sysconfig.get_paths()["purelib"])
        binary = site / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        if not binary.exists():
            raise RuntimeError("tritonserver not found: install the nvidia-pytriton wheel (`make deps`)")
        backends = self.root / ".cache" / "triton" / "backends"
        py = backends / "python"
        py.mkdir(parents=True, exist_ok=True)
        src = site / "pytriton" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        for f in (
            src / "backends" / "python" / "libtriton_python.so",
            src / "backends" / "python" / "triton_python_backend_utils.py",
            src / "python_backend_stubs" / version / "triton_python_backend_stub",
        ):
            if not (py / f.name).exists():
                shutil.copy2(f, py / f.name)
        return binary, backends, site / "nvidia_pytriton.libs"

    def start_triton(self) -> None:
        """tritonserver from the nvidia-pytriton wheel, serving ``models/`` on the CPU."""
        binary, backends, libs = self._triton_paths()
        env = dict(os.environ)
        # The Python backend stub runs the first python3 on PATH: make it this environment's.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = f"{libs}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        processes.start(
            "triton",
            [
                str(binary),
                "--model-repository",
                str(self.root / "models"),
                "--backend-directory",
                str(backends),
                "--http-port",
                str(self.ports.triton_http),
                "--grpc-port",
                str(self.ports.triton_grpc),
                "--metrics-port",
                str(self.ports.triton_metrics),
                "--log-verbose",
                "0",
                "--exit-on-error",
                "true",
                "--strict-readiness",
                "true",
            ],
            run_dir=self.run_dir,
            env=env,
            cwd=self.root,
        )

    def wait_triton(self, timeout_s: float = 120.0) -> None:
        """Wait for ``/v2/health/ready`` (all models loaded)."""
        url = f"http://{self.host}:{self.ports.triton_http}/v2/health/ready"
        processes.wait_until(lambda: _http_ok(url), timeout_s=timeout_s, what="Triton", alive=("triton", self.run_dir))

    # ---- PostgreSQL ----------------------------------------------------------------------
    def start_postgres(self) -> None:
        """A throwaway PostgreSQL cluster under the run folder (Debian's server binaries).

        As root the cluster runs as ``postgres``, which must be able to enter every folder above its
        data folder; when the checkout is not reachable by that user (a 0700 home, a ``mktemp -d``
        folder), the data folder is made under the system temporary folder instead and
        ``<run folder>/postgres`` links to it."""
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries missing: `apt-get install postgresql` (make deps)")
        bindir = Path(bins[-1]).parent
        user = "postgres" if os.geteuid() == 0 else None
        data = self.postgres_data_dir(user)
        if not (data / "PG_VERSION").exists():
            done = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=False,
                capture_output=True,
                text=True,
                user=user,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"initdb failed on the data folder {data} (as user {user or pwd.getpwuid(os.geteuid()).pw_name}): "
                    f"{done.stderr.strip()[-500:]}"
                )
        processes.start(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.ports.postgres),
                "-k",
                str(data),
                "-h",
                self.host,
                "-c",
                "fsync=off",
            ],
            run_dir=self.run_dir,
            env=dict(os.environ),
            cwd=data,
            user=user,
        )

    def postgres_data_dir(self, user: str | None) -> Path:
        """The cluster's data folder, created and owned by ``user``: ``<run folder>/postgres``, or a
        folder under the system temporary folder linked from there when ``user`` cannot reach the
        run folder."""
        link = self.run_dir / "postgres"
        if link.is_symlink():
            return link.resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if user is not None and not _reachable_by(user, self.run_dir):
            data = Path(tempfile.mkdtemp(prefix="radcds-postgres-"))
            link.symlink_to(data, target_is_directory=True)
        else:
            data = link
            data.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
            if not _reachable_by(user, data):
                raise RuntimeError(f"PostgreSQL data folder {data} is not reachable by the user {user}")
        return data

    def discard_postgres_data(self) -> None:
        """Remove the cluster's data folder (also when it lives outside the run folder)."""
        link = self.run_dir / "postgres"
        if link.is_symlink():
            shutil.rmtree(link.resolve(), ignore_errors=True)
            link.unlink()
        else:
            shutil.rmtree(link, ignore_errors=True)

    def wait_postgres(self, timeout_s: float = 60.0) -> None:
        """Wait for connections, then create one database per service."""
        import psycopg

        dsn = f"postgresql://postgres@{self.host}:{self.ports.postgres}/postgres"

        def accepting() -> bool:
            psycopg.connect(dsn, connect_timeout=2).close()
            return True

        processes.wait_until(
            accepting,
            timeout_s=timeout_s,
            what="PostgreSQL",
            alive=("postgres", self.run_dir),
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            for service in DATABASES:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"radcds_{service}",)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "radcds_{service}"')

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
                defaults[f"{p}S3_ENDPOINT_URL"] = self.s3_endpoint
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
        if db and service in ("imaging", "reporting", "referral", "fusion"):
            defaults[f"{p}DATABASE_URL"] = db
        env = dict(os.environ)
        for key, value in defaults.items():
            env.setdefault(key, value)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def dev_issuer(self) -> tuple[Path, Path]:
        """The development EHR's private key and the trusted-issuers file naming it (made once)."""
        from radcds_referral.devkeys import DEV_ISSUERS_FILE_NAME, DEV_KEY_FILE_NAME, write_dev_issuer

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
            lambda: _http_ok(url), timeout_s=timeout_s, what=f"radcds {service}", alive=(service, self.run_dir)
        )

    # ---- whole stack ---------------------------------------------------------------------
    def up(self, *, services: tuple[str, ...] = SERVICES) -> None:
        """Start everything and wait until every component reports ready."""
        try:
            self.start_kafka()
            self.start_triton()
            if self.uses_s3():
                self.start_s3proxy()
                self.wait_s3proxy()
            if self.postgres:
                self.start_postgres()
                self.wait_postgres()
            self.wait_kafka()
            self.wait_triton()
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
        for name in (*reversed(SERVICES), "triton", "kafka", "postgres", "s3proxy"):
            if processes.stop(name, self.run_dir):
                stopped.append(name)
        return stopped


def _reachable_by(user: str, path: Path) -> bool:
    """Whether ``user`` can enter ``path`` (search permission on it and every folder above it)."""
    return subprocess.run(["test", "-x", str(path)], user=user, check=False).returncode == 0


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - loopback probe
        return bool(resp.status == 200)
