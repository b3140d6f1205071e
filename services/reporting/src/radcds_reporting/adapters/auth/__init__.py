"""Access-token verification (SMART on FHIR bearer tokens)."""
