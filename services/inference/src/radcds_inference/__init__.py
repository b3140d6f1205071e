"""radcds inference: analyses stored instances with models served by Triton over gRPC."""
