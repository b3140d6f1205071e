"""FHIR R4 adapters: domain value objects to and from ``fhir.resources.R4B`` resources."""
