"""Kafka adapters: CloudEvents binary codec, publisher, at-least-once consumer loop, admin."""
