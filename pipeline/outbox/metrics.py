"""The relay's Prometheus metrics and its HTTP endpoint (`/metrics`, `/health`)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()

BACKLOG_ROWS = Gauge("nibble_relay_backlog_rows", "Unpublished outbox rows", ["outbox"], registry=REGISTRY)
OLDEST_AGE = Gauge(
    "nibble_relay_oldest_event_age_seconds",
    "Age of the oldest unpublished event",
    ["outbox"],
    registry=REGISTRY,
)
DEAD_LETTER_ROWS = Gauge(
    "nibble_relay_dead_letter_rows", "Rows in the dead-letter table", ["outbox"], registry=REGISTRY
)
PUBLISHING = Gauge(
    "nibble_relay_publishing", "1 while this relay holds a lane of the outbox", ["outbox"], registry=REGISTRY
)
LANES = Gauge("nibble_relay_lanes_held", "Lanes of the outbox this relay holds", ["outbox"], registry=REGISTRY)
PUBLISHED = Counter("nibble_relay_events_published_total", "Events acknowledged by Kafka", ["topic"], registry=REGISTRY)
DEAD_LETTERED = Counter(
    "nibble_relay_events_dead_lettered_total",
    "Poison events moved to dead letter",
    ["outbox"],
    registry=REGISTRY,
)
ERRORS = Counter("nibble_relay_errors_total", "Errors by kind", ["kind"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "nibble_relay_batch_seconds",
    "Claim, encode, publish and delete of one batch",
    ["outbox"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)


class Health:
    """What /health reports: the loop's last heartbeat and the outboxes this relay publishes (holds lanes of)."""

    def __init__(self, stale_after_s: float = 60) -> None:
        self.stale_after_s = stale_after_s
        self.last_beat = time.monotonic()
        self.publishing: list[str] = []

    def beat(self, publishing: list[str]) -> None:
        self.last_beat = time.monotonic()
        self.publishing = publishing

    def report(self) -> tuple[int, dict[str, object]]:
        age = time.monotonic() - self.last_beat
        healthy = age < self.stale_after_s
        return (200 if healthy else 503), {
            "healthy": healthy,
            "loop_age_s": round(age, 3),
            "publishing": self.publishing,
        }


def serve(host: str, port: int, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics and /health from a daemon thread; the relay loop itself stays single-threaded."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                status, body, content_type = 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
            elif self.path == "/health":
                status, report = health.report()
                body, content_type = json.dumps(report).encode(), "application/json"
            else:
                status, body, content_type = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
