"""DICOM adapters of inference: pixels prepared for the models, and the DICOM SR (TID 1500) of an analysis."""
