"""Nibble Pipeline: PostgreSQL outbox -> relay -> Avro on Kafka -> Apache Pinot."""
