"""The infrastructure of the local stack, one class per component: Apache Kafka (KRaft), Triton, PostgreSQL and
S3Proxy. Each knows how to start its process under a run folder and how to wait until it is ready;
:class:`radcds_devstack.stack.LocalStack` composes them with the radcds services."""
