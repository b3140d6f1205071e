"""A throwaway Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``) for peer tests and benchmarks.

Orthanc runs from its own temporary folder (storage, index, config, log) on free loopback ports, with the
DICOMweb plugin at ``/dicom-web/``. It is an independent PACS: a real peer for our DIMSE SCP and DICOMweb.

    with OrthancServer(tmp_dir, modalities={"radcds": ("RADCDS", "127.0.0.1", 11112)}) as orthanc:
        httpx.get(f"{orthanc.url}/system")
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = "install the Debian packages: apt-get install -y orthanc orthanc-dicomweb (deploy/local/system-deps.sh)"


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports the kernel considers free right now (all bound to port 0 at once, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free right now (bind to port 0)."""
    return free_ports(1, host)[0]


def orthanc_binary() -> str:
    """Path of the ``Orthanc`` binary and its DICOMweb plugin, or a RuntimeError saying how to install them."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if binary is None:
        raise RuntimeError(f"Orthanc is not installed: {INSTALL_HINT}")
    if not DICOMWEB_PLUGIN.exists():
        raise RuntimeError(f"Orthanc's DICOMweb plugin {DICOMWEB_PLUGIN} is missing: {INSTALL_HINT}")
    return binary


class OrthancServer:
    """One Orthanc process; ``start()`` waits for ``GET /system``, ``stop()`` sends SIGTERM and waits."""

    def __init__(
        self,
        work_dir: Path,
        *,
        aet: str = "ORTHANC",
        modalities: dict[str, tuple[str, str, int]] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.work_dir = Path(work_dir)
        self.aet = aet
        self.host = host
        self.modalities = dict(modalities or {})
        self.http_port, self.dicom_port = free_ports(2, host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "orthanc.log"

    def config(self) -> dict[str, object]:
        return {
            "Name": "radcds-test-orthanc",
            "StorageDirectory": str(self.work_dir / "storage"),
            "IndexDirectory": str(self.work_dir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: [aet, host, port] for name, (aet, host, port) in self.modalities.items()},
        }

    def start(self, timeout_s: float = 30.0) -> OrthancServer:
        binary = orthanc_binary()
        config_dir = self.work_dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "orthanc.json").write_text(json.dumps(self.config(), indent=2))
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [binary, f"{config_dir}/"], stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._process.returncode} at start:\n{self.tail_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer GET /system within {timeout_s} s:\n{self.tail_log()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no Orthanc log)"

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
