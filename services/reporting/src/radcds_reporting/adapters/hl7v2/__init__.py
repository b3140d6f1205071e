"""HL7 v2.5.1 adapters: ORU^R01 out, ORM^O01/OMI^O23 in, ACKs, MLLP framing, the outbound queue."""
