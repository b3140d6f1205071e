"""referral's pure domain: the appropriateness rules and their engine, the CDS Services offered, consultations.

Standard library (and the kernel's pure ``radcds.domain``) only: no FastAPI, HTTP client, database or FHIR model
library (the import contracts in ``make lint`` keep it so)."""
