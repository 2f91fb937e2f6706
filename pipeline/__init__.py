"""Nibble Pipeline: PostgreSQL outbox -> relay -> Avro on Kafka -> Apache Pinot."""

from pathlib import Path

# The checked-in data (migrations, Avro contracts, Pinot configs, stack recipes) lives at the repo root.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
