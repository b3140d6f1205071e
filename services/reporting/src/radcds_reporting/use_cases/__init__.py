"""Use cases of reporting: orders received, results sent (ORU^R01), sign-off, critical results."""
