"""radcds fusion: findings in the patient's context and against prior studies (see docs/fusion.md)."""
