"""S3Proxy (Maven Central jars under ``.cache/s3proxy/lib``) on its filesystem backend: the local S3-compatible
object store imaging can keep instances in."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack import processes

#: Access key and secret of the local S3Proxy (development and tests only; never used elsewhere).
S3_DEV_CREDENTIALS = ("radcds-dev", "radcds-dev-secret")


@dataclass(frozen=True)
class S3Proxy:
    """One S3Proxy under ``run_dir/<name>`` on ``host:port`` (credentials in :data:`S3_DEV_CREDENTIALS`)."""

    root: Path
    run_dir: Path
    host: str
    port: int
    name: str = "s3proxy"

    @property
    def lib(self) -> Path:
        """The S3Proxy jars (``make deps``)."""
        return self.root / ".cache" / "s3proxy" / "lib"

    @property
    def endpoint(self) -> str:
        """The endpoint URL clients use."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Write the properties and start S3Proxy."""
        if not any(self.lib.glob("s3proxy-*.jar")):
            raise RuntimeError(f"S3Proxy jars missing in {self.lib}: run `make deps`")
        home = self.run_dir / self.name
        (home / "data").mkdir(parents=True, exist_ok=True)
        props = home / "s3proxy.properties"
        identity, credential = S3_DEV_CREDENTIALS
        props.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint={self.endpoint}",
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
            self.name,
            [java, *jopts, "-cp", f"{self.lib}/*", "org.gaul.s3proxy.Main", "--properties", str(props)],
            run_dir=self.run_dir,
            env={**os.environ, "LOG_LEVEL": "warn"},
            cwd=self.root,
        )

    def wait(self, timeout_s: float = 60.0) -> None:
        """Wait until S3Proxy accepts connections."""
        processes.wait_until(
            lambda: processes.port_open(self.host, self.port),
            timeout_s=timeout_s,
            what="S3Proxy",
            alive=(self.name, self.run_dir),
        )
