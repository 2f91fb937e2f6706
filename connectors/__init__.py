"""Adapters to the services the pipeline talks to: PostgreSQL, Kafka, Pinot, the schema registry, Superset and
plain HTTP.

They take plain values (URLs, names, numbers) and know nothing of the domain or the settings; each turns its
driver's failures into a NibbleError naming the service and the setting its caller gives.
"""
