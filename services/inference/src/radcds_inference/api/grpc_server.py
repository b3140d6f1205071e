"""The inference gRPC endpoint: ``radcds.v1.Inference/AnalyzeStudy`` and the standard ``grpc.health.v1`` service.

``AnalyzeStudy`` (proto/radcds/v1/inference.proto) only translates: it validates the request,
asks :class:`~radcds_inference.handlers.InferenceService` to analyse the study imaging holds,
and maps the analyses (or the failure) back: INVALID_ARGUMENT for a malformed UID or an unknown
model, NOT_FOUND when imaging holds no such study, UNAVAILABLE when Triton or imaging is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from radcds.adapters.kafka.consumer import RetryableError
from radcds.domain.findings import ImageAnalysis
from radcds_inference.adapters.grpc.gen import inference_pb2, inference_pb2_grpc
from radcds_inference.adapters.triton.errors import TritonModelError, TritonUnavailable
from radcds_inference.domain.study import UID
from radcds_inference.handlers import InferenceService, SeriesResult

SERVICE_NAME = "radcds.v1.Inference"
log = logging.getLogger(__name__)


def analysis_message(result: SeriesResult) -> inference_pb2.InstanceAnalysis:
    """One (series, model) result as the proto message."""
    a: ImageAnalysis = result.analysis
    return inference_pb2.InstanceAnalysis(
        sop_instance_uid=a.instance.sop_instance_uid,
        model_name=a.model.name,
        model_version=a.model.version,
        measurements=[
            inference_pb2.Measurement(
                code=inference_pb2.Coding(system=m.code.system, code=m.code.code, display=m.code.display),
                value=m.value,
                ucum_unit=m.unit,
            )
            for m in a.measurements
        ],
        not_analysed_reason=a.not_analysed_reason,
        findings=[inference_pb2.Coding(system=c.system, code=c.code, display=c.display) for c in a.findings],
        critical=a.critical,
        location=a.location.description if a.location else "",
        series_instance_uid=result.series_instance_uid,
        key_image_frame_number=a.key_image.frame_number if a.key_image else 0,
    )


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    """``AnalyzeStudy``: on-demand analysis; results are returned, not published nor stored."""

    def __init__(
        self, service: InferenceService, run: Callable[[Coroutine[Any, Any, Any]], Any], *, timeout_s: float
    ) -> None:
        self._service = service
        self._run = run
        self._timeout_s = timeout_s

    def AnalyzeStudy(  # noqa: N802 - the gRPC method name
        self, request: inference_pb2.AnalyzeStudyRequest, context: grpc.ServicerContext
    ) -> inference_pb2.AnalyzeStudyResponse:
        uid = request.study_instance_uid.strip()
        if not uid or len(uid) > 64 or not UID.match(uid):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "study_instance_uid must be a DICOM UID (PS3.5 9.1)")
        try:
            self._service.entries(tuple(request.model_names))
        except KeyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown or inactive model(s): {exc.args[0]}")
        try:
            results = self._run(self._analyse(uid, tuple(request.model_names)))
        except LookupError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except (TritonUnavailable, RetryableError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except TritonModelError as exc:
            log.warning("model refused an on-demand request", extra={"error": str(exc)})
            context.abort(grpc.StatusCode.INTERNAL, "a model refused the study's input")
        except TimeoutError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "analysis took too long")
        return inference_pb2.AnalyzeStudyResponse(
            study_instance_uid=uid, analyses=[analysis_message(r) for r in results]
        )

    async def _analyse(self, uid: str, model_names: tuple[str, ...]) -> list[SeriesResult]:
        study = await self._service.find_study(uid)
        return await self._service.analyse_study(study, model_names=model_names)


class GrpcEndpoint:
    """A gRPC server with ``AnalyzeStudy`` (when given a servicer) and a health status that follows readiness."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ready: Callable[[], bool],
        servicer: InferenceServicer | None = None,
        max_workers: int = 4,
    ) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if servicer is not None:
            # the generated gRPC module has no annotations (grpc_tools writes no .pyi for *_pb2_grpc)
            inference_pb2_grpc.add_InferenceServicer_to_server(servicer, self._server)  # type: ignore[no-untyped-call]
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
