"""The one seam through which tests obtain PostgreSQL, Kafka and Pinot.

Two back ends give the same `Services`: testcontainers (the images of docker-compose.yml) when a Docker
engine answers, the embedded local stack (`nibble stack up`) otherwise. Under CI=true a service that
cannot be had fails the run; nothing here skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.services import Services, start_services


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with start_services() as running:
        yield running


@pytest.fixture
def fresh_database(services: Services) -> Iterator[str]:
    """An empty database of its own (PostGIS available), dropped after the test; yields its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield services.database_url_for(name)
    finally:
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
