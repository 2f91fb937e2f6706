"""Adapters to the services the pipeline talks to: PostgreSQL, Kafka, Pinot and plain HTTP.

They take plain values (URLs, names, numbers) and know nothing of the domain or the settings.
"""
