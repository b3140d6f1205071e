"""radcds's development tools (never in a service image; no production module imports them).

- :mod:`.stack` and :mod:`.components`: the local stack, real Apache Kafka (KRaft), Triton, optional PostgreSQL and
  S3Proxy and the radcds services, used by ``make up``/``make down``/``make run`` and by the integration tests, so
  both start the components the same way. Logs and pid files go under a run folder (``.run/`` by default).
- :mod:`.demo` and :mod:`.samples`: the demo ``make run`` replays and the sample DICOM it sends.
- :mod:`.testing`: the test kit (migrated databases on SQLite or PostgreSQL, fakes of our own ports).
- :mod:`.devkeys` and :mod:`.scenarios`: the development EHR's keys and the CDS Hooks scenarios of the referral
  demo and tests; :mod:`.kafka_admin` (topics) and :mod:`.storescu` (a DIMSE sender) for the stack and benchmarks.
- :mod:`.legacy`: the frozen shared migration chain of the releases before issue #12, for the upgrade tests.
"""
