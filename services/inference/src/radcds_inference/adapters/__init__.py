"""Adapters of inference: Triton (KServe v2 over gRPC), DICOM pixels and SR, imaging's DICOMweb, generated gRPC code."""
