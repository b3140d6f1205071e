"""Entrypoints of inference: the gRPC ``AnalyzeStudy`` servicer and its health service."""
