"""The local stack: real Apache Kafka (KRaft), Triton, optional PostgreSQL, and the radcds services.

Used by ``make up``/``make down``/``make run`` and by the integration tests, so both start the
components the same way. Logs and pid files go under a run folder (``.run/`` by default).
"""
