"""radcds reporting: preliminary FHIR R4 DiagnosticReports from imaging findings, served at /fhir."""
