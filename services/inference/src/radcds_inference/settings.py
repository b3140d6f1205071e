"""Settings of the inference service (env prefix ``RADCDS_INFERENCE_``)."""

from __future__ import annotations

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
    triton_timeout_s: float = Field(default=30.0, gt=0)
    #: Timeout for WADO-RS retrieval from imaging.
    retrieve_timeout_s: float = Field(default=30.0, gt=0)
    consumer_group: str = "radcds-inference"
    #: Longest image side sent to models after downsampling.
    max_image_size: int = Field(default=512, ge=64, le=4096)
