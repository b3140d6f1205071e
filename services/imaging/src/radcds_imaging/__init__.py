"""radcds imaging: DICOM ingest over DICOMweb (STOW-RS, WADO-RS) and study events."""
