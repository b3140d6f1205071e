"""radcds referral: imaging appropriateness as a CDS Hooks 2.0 service."""
