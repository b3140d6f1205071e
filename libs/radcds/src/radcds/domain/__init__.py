"""Pure domain kernel of radcds: coded concepts, value objects, commands and events.

Nothing in this package imports infrastructure (FastAPI, Kafka, gRPC, Triton, pydicom,
hl7apy, fhir.resources, SQLAlchemy); an import-linter contract keeps it so.
"""
