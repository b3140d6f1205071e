"""Adapters of the imaging service: DICOM codecs, the instance store, the database, FHIR mapping."""
