"""Adapters: the only place where third-party clients (Kafka, FHIR, DICOM, Triton, SQL) live."""
