"""referral's adapters: the CDS Hooks wire formats (requests, cards), the FHIR clinical context, the EHR's FHIR
fallback, fusion's follow-ups, JWT trust of CDS Clients and the database repository."""
