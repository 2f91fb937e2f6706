"""A production-like writer for tests and benchmarks: short transactions changing random existing orders
and deliveries from a thread, as their services (orders as order_service, deliveries as driver_service),
timing each commit."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Sequence

from pipeline.devstack.service_connections import ServiceConnections

# One order or delivery per transaction, as a service would: a tip, or the next step of an order under way.
TIP = "UPDATE order_service.orders SET tip = tip + 0.25 WHERE id = %s"
# Only orders that move: touching a row without changing it moves updated_at alone, which is no event.
STEP = (
    "UPDATE order_service.orders SET status = CASE status WHEN 'placed' THEN 'confirmed' ELSE 'preparing' END "
    "WHERE id = %s AND status IN ('placed', 'confirmed')"
)
DISTANCE = "UPDATE driver_service.deliveries SET distance_m = coalesce(distance_m, 0) + 10 WHERE id = %s"


class Writer(threading.Thread):
    """Changes random rows of `orders` (tips), `active` orders (status steps) and `deliveries` until
    stopped, at most `rate` transactions/s; `latencies_ms` holds each commit's round trip."""

    def __init__(
        self,
        database_url: str,
        orders: Sequence[uuid.UUID],
        deliveries: Sequence[uuid.UUID] = (),
        active: Sequence[uuid.UUID] = (),
        rate: float = 200,
        seed: int = 7,
    ) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.changes = [
            (statement, ids) for statement, ids in ((TIP, orders), (DISTANCE, deliveries), (STEP, active)) if ids
        ]
        self.interval = 1 / rate
        self.rng = random.Random(seed)
        self.latencies_ms: list[float] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with ServiceConnections(self.database_url, "nibble-test-writer", "test writer") as conn:
                while not self.stopping.is_set():
                    started = time.perf_counter()
                    statement, ids = self.rng.choice(self.changes)
                    conn.execute(statement, (self.rng.choice(ids),))
                    conn.commit()
                    elapsed = time.perf_counter() - started
                    self.latencies_ms.append(elapsed * 1000)
                    time.sleep(max(0.0, self.interval - elapsed))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> list[float]:
        """Stop, re-raise what the thread met, and return the commit latencies (ms)."""
        self.stopping.set()
        self.join(30)
        if self.error is not None:
            raise self.error
        return self.latencies_ms
