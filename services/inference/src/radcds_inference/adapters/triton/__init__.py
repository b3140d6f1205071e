"""NVIDIA Triton Inference Server client adapter (KServe v2 protocol over gRPC)."""
