"""Adapters of fusion: translate DICOM SR, FHIR and events into the domain's types."""
