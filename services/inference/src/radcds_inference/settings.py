"""Settings of the inference service (env prefix ``RADCDS_INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcds.runtime.settings import ServiceSettings


class InferenceSettings(ServiceSettings):
    """Validated at start-up; a bad value stops the service with a clear message."""

    model_config = SettingsConfigDict(env_prefix="RADCDS_INFERENCE_", extra="ignore")

    http_port: int = Field(default=8083, ge=1, le=65535)
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    #: Triton gRPC endpoint, host:port.
    triton_url: str = Field(default="127.0.0.1:8001", pattern=r"^[^:/\s]+:\d+$")
    #: Timeout of one Triton request (ModelInfer, ModelConfig).
    triton_timeout_s: float = Field(default=30.0, gt=0)
    #: Retries of an unavailable or timed-out Triton request before the event is retried later.
    triton_retries: int = Field(default=2, ge=0, le=10)
    triton_backoff_s: float = Field(default=0.2, gt=0)
    #: "system": inputs travel through POSIX shared memory (Triton on the same host); "none": over gRPC.
    triton_shared_memory: Literal["system", "none"] = "none"
    #: Consecutive Triton failures that open the circuit breaker, and how long it stays open.
    triton_breaker_failures: int = Field(default=5, ge=1, le=100)
    triton_breaker_reset_s: float = Field(default=10.0, gt=0)
    #: Triton model repository holding manifest.json (the models served and their envelopes).
    model_repository: Path = Path("models")
    #: Imaging's DICOMweb root: WADO-RS / QIDO-RS for AnalyzeStudy, STOW-RS for the SR.
    imaging_dicomweb_url: str = Field(default="http://127.0.0.1:8082/dicom-web", pattern=r"^https?://")
    #: Timeout for DICOMweb calls to imaging.
    retrieve_timeout_s: float = Field(default=30.0, gt=0)
    #: Concurrent DICOMweb requests to imaging.
    retrieve_parallel: int = Field(default=4, ge=1, le=64)
    #: Store each analysis' DICOM SR (TID 1500) in imaging over STOW-RS.
    store_structured_reports: bool = True
    #: Upper bound of one AnalyzeStudy call.
    analyze_timeout_s: float = Field(default=300.0, gt=0)
    consumer_group: str = "radcds-inference"
