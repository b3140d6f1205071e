"""HTTP entrypoints of the referral service."""
