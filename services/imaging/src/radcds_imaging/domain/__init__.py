"""Pure imaging domain: no web framework, database, broker or DICOM toolkit imports."""
