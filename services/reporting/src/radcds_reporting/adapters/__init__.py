"""Adapters of the reporting service: the third-party clients only reporting uses (HL7 v2 over MLLP)."""
