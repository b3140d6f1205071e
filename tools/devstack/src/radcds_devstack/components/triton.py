"""NVIDIA Triton Inference Server: the ``tritonserver`` binary inside the ``nvidia-pytriton`` wheel, serving the
repository's ``models/`` on the CPU with the Python backend."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from radcds_devstack import processes


@dataclass(frozen=True)
class TritonServer:
    """One tritonserver under ``run_dir/triton`` on ``host`` with its HTTP, gRPC and metrics ports."""

    root: Path
    run_dir: Path
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    name: str = "triton"
    #: The model repository served (default: the checkout's ``models/``).
    model_repository: Path | None = None

    def _paths(self) -> tuple[Path, Path, Path]:
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

    def start(self) -> None:
        """Start tritonserver on the model repository (strict readiness: ready once every model is loaded)."""
        binary, backends, libs = self._paths()
        env = dict(os.environ)
        # The Python backend stub runs the first python3 on PATH: make it this environment's.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["LD_LIBRARY_PATH"] = f"{libs}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        repository = self.model_repository or self.root / "models"
        argv = [str(binary), "--model-repository", str(repository), "--backend-directory", str(backends)]
        argv += ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        argv += ["--metrics-port", str(self.metrics_port), "--log-verbose", "0"]
        argv += ["--exit-on-error", "true", "--strict-readiness", "true"]
        processes.start(self.name, argv, run_dir=self.run_dir, env=env, cwd=self.root)

    def wait(self, timeout_s: float = 120.0) -> None:
        """Wait for ``/v2/health/ready`` (all models loaded)."""
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"
        processes.wait_until(
            lambda: processes.http_ok(url), timeout_s=timeout_s, what="Triton", alive=(self.name, self.run_dir)
        )
