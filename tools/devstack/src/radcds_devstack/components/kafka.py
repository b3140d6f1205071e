"""Apache Kafka 4.x in KRaft mode from the Maven Central jars under ``.cache/kafka/lib``: one node acting as
broker and controller."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack import processes

SERVER_PROPERTIES = (
    "process.roles=broker,controller",
    "node.id=1",
    "controller.listener.names=CONTROLLER",
    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "inter.broker.listener.name=PLAINTEXT",
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
)
LOG4J_PROPERTIES = (
    "status=warn",
    "appender.console.type=Console",
    "appender.console.name=STDOUT",
    "appender.console.layout.type=PatternLayout",
    "appender.console.layout.pattern=[%d] %p %m (%c)%n",
    "rootLogger.level=WARN",
    "rootLogger.appenderRef.stdout.ref=STDOUT",
    "logger.kafka.name=kafka.server.KafkaRaftServer",
    "logger.kafka.level=INFO",
)


@dataclass(frozen=True)
class KafkaBroker:
    """One KRaft node under ``run_dir/kafka``, listening on ``host:port`` (controller on ``controller_port``)."""

    root: Path
    run_dir: Path
    host: str
    port: int
    controller_port: int
    name: str = "kafka"

    @property
    def lib(self) -> Path:
        """The Kafka jars (``make deps``)."""
        return self.root / ".cache" / "kafka" / "lib"

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string of this broker."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Write the node's configuration, format its storage once, start it."""
        if not any(self.lib.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"Kafka jars missing in {self.lib}: run `make deps`")
        home = self.run_dir / self.name
        (home / "data").mkdir(parents=True, exist_ok=True)
        props = home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    *SERVER_PROPERTIES,
                    f"controller.quorum.bootstrap.servers={self.host}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    f"log.dirs={home / 'data'}",
                    "",
                ]
            )
        )
        log4j = home / "log4j2.properties"
        log4j.write_text("\n".join([*LOG4J_PROPERTIES, ""]))
        java = shutil.which("java") or "java"
        cp = f"{self.lib}/*"
        if not (home / "data" / "meta.properties").exists():
            self._format_storage(java, cp, props)
        jopts = [
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile=file:{log4j}",
        ]
        processes.start(
            self.name,
            [java, *jopts, "-cp", cp, "kafka.Kafka", str(props)],
            run_dir=self.run_dir,
            env=dict(os.environ),
            cwd=self.root,
        )

    @staticmethod
    def _format_storage(java: str, cp: str, props: Path) -> None:
        # A KRaft cluster id is a UUID in URL-safe base64 without padding (22 characters).
        # A leading "-" would be read as a command-line option by StorageTool: draw again.
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        tool = [java, "-cp", cp, "kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted"]
        subprocess.run(
            [*tool, "-t", cluster_id, "-c", str(props)],
            check=True,
            capture_output=True,
        )

    def wait(self, timeout_s: float = 120.0) -> None:
        """Wait for DescribeCluster to answer, then create the radcds topics."""
        from radcds_devstack.kafka_admin import ensure_topics, radcds_topics, wait_for_cluster

        processes.wait_until(
            lambda: processes.port_open(self.host, self.port),
            timeout_s=timeout_s,
            what="Kafka port",
            alive=(self.name, self.run_dir),
        )
        wait_for_cluster(self.bootstrap, timeout_s=timeout_s)
        ensure_topics(self.bootstrap, radcds_topics())
