"""radcds shared kernel: what two or more radcds services use (events, Kafka, outbox, settings, telemetry)."""
