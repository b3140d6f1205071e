"""DICOM adapters: where radcds reads DICOM objects and their pixels with pydicom."""
