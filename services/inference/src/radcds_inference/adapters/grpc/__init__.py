"""gRPC adapters: code generated from proto/ lives in gen/ (make proto)."""
