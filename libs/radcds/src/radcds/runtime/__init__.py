"""Service runtime shared by every radcds service: settings, logging, telemetry, health, consumers."""
