"""`nibble verify --watch INTERVAL`: verify the recent window again and again and serve what was found as
Prometheus gauges (monitoring/alerts.yml reads them): drift per stream and kind, the window last verified,
how long it took, Pinot's ingestion lag per table, and the outboxes' lanes as PostgreSQL's leases show them.

A plain loop: verify, set the gauges, sleep the rest of the interval. A failed round (a service away) is
counted and logged on one line; the next round tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pinotdb.exceptions
import psycopg
import requests
from confluent_kafka import KafkaException
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from connectors.pinot import ControllerError
from pipeline.analytics import drift
from pipeline.analytics.verify import STREAMS, Report, Scope, Verifier
from pipeline.config import Settings
from pipeline.errors import NibbleError
from pipeline.outbox import admin

LOG = logging.getLogger("nibble.verify.watch")
# What a round can meet when a service is away (the connectors' `errors` translations name the same ones).
SERVICE_ERRORS = (
    NibbleError,
    psycopg.Error,
    pinotdb.exceptions.Error,
    httpx.HTTPError,
    requests.RequestException,
    ControllerError,
    KafkaException,
)

REGISTRY = CollectorRegistry()
DRIFT = Gauge(
    "nibble_verify_drift_aggregates",
    "Aggregates Pinot holds differently from PostgreSQL, at the last verification",
    ["stream", "kind"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "nibble_verify_in_flight_aggregates",
    "Aggregates still changing when the last verification ended (not drift)",
    ["stream"],
    registry=REGISTRY,
)
WINDOW_START = Gauge(
    "nibble_verify_window_start_timestamp_seconds", "Start of the window last verified", registry=REGISTRY
)
WINDOW_END = Gauge("nibble_verify_window_end_timestamp_seconds", "End of the window last verified", registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "nibble_verify_last_success_timestamp_seconds", "When the last verification finished", registry=REGISTRY
)
DURATION = Gauge("nibble_verify_duration_seconds", "Time the last verification took", registry=REGISTRY)
FAILURES = Counter("nibble_verify_failures_total", "Verifications that could not be carried out", registry=REGISTRY)
LAG_MESSAGES = Gauge(
    "nibble_pinot_ingestion_lag_messages",
    "Messages of its topic a Pinot table has not consumed",
    ["table"],
    registry=REGISTRY,
)
LAG_SECONDS = Gauge(
    "nibble_pinot_ingestion_lag_seconds",
    "Age of the oldest message of its topic a Pinot table has not consumed (0: none)",
    ["table"],
    registry=REGISTRY,
)
LANES = Gauge("nibble_outbox_lanes", "Lanes of the outbox", ["outbox"], registry=REGISTRY)
LANES_HELD = Gauge(
    "nibble_outbox_lanes_held", "Lanes of the outbox some relay holds a lease on", ["outbox"], registry=REGISTRY
)


def record(report: Report) -> None:
    """Set the gauges from one verification."""
    counts = drift.summary(report.drifts)
    for result in report.results:
        for kind in drift.KINDS:
            DRIFT.labels(result.stream, kind).set(counts.get((result.stream, kind), 0))
        IN_FLIGHT.labels(result.stream).set(result.in_flight)
    WINDOW_START.set(report.scope.since.timestamp())
    WINDOW_END.set(report.scope.until.timestamp())
    DURATION.set(report.seconds)
    LAST_SUCCESS.set(time.time())
    for table, lag in report.ingestion_lag.items():
        LAG_MESSAGES.labels(table).set(lag)


def record_lanes(settings: Settings) -> None:
    for row in admin.status(settings):
        LANES.labels(row["outbox"]).set(int(row["lane_count"]))
        LANES_HELD.labels(row["outbox"]).set(sum(len(lanes) for lanes in row["lanes_by_relay_pid"].values()))


def watch(
    settings: Settings,
    verifier: Verifier,
    interval_s: float,
    scope_at: Callable[[datetime], Scope],
    on_report: Callable[[Report], None],
    rounds: int | None = None,
) -> None:
    """Verify `scope_at(now)` every `interval_s` (`rounds` times, or until interrupted), serving the gauges on
    NIBBLE_VERIFY_METRICS_HOST:NIBBLE_VERIFY_METRICS_PORT (no server when the port is 0)."""
    endpoints = settings.endpoints
    if endpoints.verify_metrics_port:
        start_http_server(endpoints.verify_metrics_port, endpoints.verify_metrics_host, registry=REGISTRY)
    done = 0
    while rounds is None or done < rounds:
        started = time.monotonic()
        try:
            scope = scope_at(datetime.now(UTC))
            report = verifier.verify(scope)
            for name in scope.streams:
                LAG_SECONDS.labels(STREAMS[name].table).set(verifier.ingestion_lag_seconds(STREAMS[name]))
            record_lanes(settings)
            record(report)  # last: it sets the time of the last success
            on_report(report)
        except SERVICE_ERRORS as exc:  # counted, logged, tried again next round
            FAILURES.inc()
            LOG.error("verification failed: %s", " ".join(str(exc).split())[:300])
        done += 1
        if rounds is None or done < rounds:
            time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
