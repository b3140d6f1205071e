"""Adapters of the worklist: its database, the reporting and imaging services, the OpenID Connect provider."""
