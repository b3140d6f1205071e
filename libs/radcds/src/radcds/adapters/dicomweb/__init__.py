"""DICOMweb (PS3.18) wire helpers shared by imaging and its clients."""
