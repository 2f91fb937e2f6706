# The relay daemon's image for docker-compose.yml (the local stack runs it straight from the venv).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY connectors ./connectors
COPY avro_schemas ./avro_schemas
COPY migrations ./migrations
COPY pinot ./pinot
# Editable, so the package finds the checked-in data (avro_schemas/, migrations/, pinot/) beside it.
RUN pip install --no-cache-dir -e .
USER nobody
CMD ["nibble", "relay"]
