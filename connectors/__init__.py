"""Adapters to the services the pipeline talks to: PostgreSQL, Kafka and Pinot."""
