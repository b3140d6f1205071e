"""The inference gRPC endpoint: the standard ``grpc.health.v1`` service (gRPC Health Checking Protocol)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE_NAME = "radcds.v1.Inference"


class GrpcEndpoint:
    """A gRPC server whose health status follows a readiness callable."""

    def __init__(self, *, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._ready = ready
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot bind gRPC port {host}:{port}")

    def start(self) -> None:
        """Start serving."""
        self._server.start()
        self.refresh()

    def refresh(self) -> None:
        """Publish the current readiness as the health status."""
        status = health_pb2.HealthCheckResponse.SERVING if self._ready() else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self._health.set(name, status)

    def stop(self) -> None:
        """Stop, letting in-flight calls finish for a moment."""
        self._server.stop(grace=2).wait()
