"""FHIR R4 adapters of reporting: resource mapping, search parameters, structured findings sent with a report."""
