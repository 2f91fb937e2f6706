"""Fixtures shared by every test folder: the services, scratch databases, topic prefixes and relays.

tests/unit needs none of them (no service is started for it: `make test-unit`). Everything else gets the
real services through the one seam in tests/support/services.py; a service that cannot be had fails the
test, it never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from tests.support.database import scratch_database
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services, start_services


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with start_services() as running:
        yield running


@pytest.fixture
def fresh_database(services: Services) -> Iterator[str]:
    """An empty database of its own (PostGIS available), dropped after the test; yields its URL."""
    with scratch_database(services.database_url) as url:
        yield url


@pytest.fixture
def db(services: Services) -> Iterator[str]:
    """A database of its own with every migration applied, dropped after the test; yields its URL."""
    with scratch_database(services.database_url, migrated=True) as url:
        yield url


@pytest.fixture
def prefix(services: Services) -> Iterator[str]:
    """Topics of this test's own, so nothing else published to Kafka is read back; deleted after the test (a
    broker left with thousands of tests' partitions is slower for everyone)."""
    name = f"t{uuid.uuid4().hex[:10]}."
    yield name
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    topics = [topic for topic in admin.list_topics(timeout=30).topics if topic.startswith(name)]
    if topics:
        for deleted in admin.delete_topics(topics, operation_timeout=30).values():
            deleted.result(60)  # done before the next test creates its own


StartRelay = Callable[..., RelayProcess]


@pytest.fixture
def start_relay(services: Services, db: str, prefix: str) -> Iterator[StartRelay]:
    """Start relays on `db` publishing to `prefix` topics (extra NIBBLE_* settings as keyword arguments);
    every one still running is killed after the test, and the prefix's registry subjects deleted."""
    started: list[RelayProcess] = []

    def start(**settings: str) -> RelayProcess:
        relay = RelayProcess(services, db, prefix, **settings)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        if relay.running:
            relay.kill()
    if started:
        delete_subjects(prefix)
