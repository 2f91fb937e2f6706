"""`nibble generate`: realistic Nibble activity written through the service schemas (never the outboxes).

A seeded simulation: users, restaurants with cuisines and locations in a few cities, drivers; orders with
items and payments that move through their lifecycle (confirmed, preparing, ready, picked up, delivered,
or cancelled), deliveries assigned to drivers, driver location pings, and support tickets about some of the
orders (see plan_ticket). Each lifecycle step is scheduled
in (scaled) time, and all steps due together are written as one set-based statement per table, the way a
busy service batches its writes. The triggers turn those writes into outbox events.

Business time is realistic: a delivery takes 25-45 minutes from its creation to the hand-over, orders
peak at lunch and dinner, weekends order more (`demand`). `run_history` writes past days as fast as the
database goes, so dashboards have shape the first time they open.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import psycopg

from pipeline.devstack.service_connections import ServiceConnections
from pipeline.privacy import keys
from pipeline.privacy.sealing import SEALING_SERVICES, key_errors, use_keys

CITIES = {  # name: (latitude, longitude) of the centre
    "Berlin": (52.520, 13.405),
    "Amsterdam": (52.370, 4.895),
    "Lisbon": (38.722, -9.139),
    "Warsaw": (52.230, 21.012),
}
CUISINES = ["thai", "italian", "indian", "japanese", "mexican", "vietnamese", "burgers", "vegan"]
DISHES = {
    "thai": "Pad thai",
    "italian": "Margherita",
    "indian": "Dal makhani",
    "japanese": "Ramen",
    "mexican": "Tacos",
    "vietnamese": "Pho bo",
    "burgers": "Cheeseburger",
    "vegan": "Buddha bowl",
}
VEHICLES = ["bicycle", "scooter", "motorcycle", "car"]
# Minutes (before scaling) at which each step happens, drawn per order: (after, low, high) means between
# `low` and `high` minutes after step `after` (or after placement). A delivery is created at confirmation
# and handed over 25-45 minutes later.
STEP_MINUTES = {
    "confirm": (None, 1, 3),
    "assign": ("confirm", 2, 6),
    "ready": (None, 12, 20),
    "pickup": ("ready", 1, 4),
    "deliver": ("confirm", 25, 45),
}
PROMISED_MINUTES = 45  # the time promised to the customer, after placement
STEP_ORDER = ["cancel", "confirm", "assign", "ready", "pickup", "deliver"]  # lifecycle order, for `advance`
# Relative demand by hour of the day (local time of the cities, about UTC+1): lunch and dinner peaks.
HOURLY_DEMAND = [
    0.10, 0.05, 0.03, 0.02, 0.02, 0.03, 0.06, 0.12, 0.20, 0.25, 0.35, 0.60,
    0.95, 1.00, 0.60, 0.35, 0.35, 0.55, 0.90, 1.00, 0.85, 0.55, 0.30, 0.18,
]  # fmt: skip
WEEKDAY_DEMAND = [0.85, 0.85, 0.90, 0.95, 1.10, 1.25, 1.15]  # Monday .. Sunday
LOCAL_OFFSET = timedelta(hours=1)
CANCEL_SHARE = 0.08
EVENTS_PER_ORDER = 10  # about: 6 order events and 4 delivery events per completed order

# Support tickets: the share of orders that get one, by how the order went (about 3 % overall), and a few
# tickets about no order (the account), per order that ends.
TICKET_SHARE = {"cancelled": 0.15, "late": 0.08, "delivered": 0.015}
ACCOUNT_TICKET_SHARE = 0.003
TICKET_SUBJECTS = {
    "cancelled": ["Order cancelled, where is my refund?", "Order cancelled without notice"],
    "late": ["Order arrived late", "Food arrived cold"],
    "delivered": ["Missing item", "Wrong item delivered", "Charged twice", "Food quality"],
    "account": ["Cannot log in", "Update my email address", "Delete my account"],
}
PRIORITIES = ["low", "medium", "high", "urgent"]
PRIORITY_WEIGHTS = {  # few urgent ones; a cancelled or late order is more pressing
    "cancelled": [0.15, 0.45, 0.30, 0.10],
    "late": [0.25, 0.50, 0.20, 0.05],
    "delivered": [0.30, 0.45, 0.20, 0.05],
    "account": [0.55, 0.35, 0.08, 0.02],
}
# Minutes (before scaling), (low, high) by priority: until an agent takes the ticket, and from the last
# conversation to the resolution.
TICKET_PICKUP_MINUTES = {"urgent": (2, 15), "high": (5, 45), "medium": (15, 120), "low": (30, 300)}
TICKET_RESOLVE_MINUTES = {"urgent": (10, 60), "high": (20, 180), "medium": (30, 480), "low": (60, 720)}
TICKET_AGENTS = 12  # the support team, shared by every city
# Lifecycle order of a ticket's steps, for writing those due together (as STEP_ORDER for orders).
TICKET_STEPS = ["open", "assign", "start", "comment", "priority", "reassign", "resolve", "close"]


@dataclass
class Restaurant:
    id: uuid.UUID
    name: str
    city: str
    cuisine: str
    lat: float
    lon: float


@dataclass
class Order:
    id: uuid.UUID
    restaurant: Restaurant
    placed_at: datetime
    delivery_id: uuid.UUID
    lat: float
    lon: float
    driver_id: uuid.UUID | None = None


@dataclass
class World:
    restaurants: list[Restaurant] = field(default_factory=list)
    drivers: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # city -> driver ids
    users: list[uuid.UUID] = field(default_factory=list)


def demand(at: datetime) -> float:
    """Relative order rate at `at`: 1.0 is a weekday's dinner peak (the weekend's is higher)."""
    local = at + LOCAL_OFFSET
    return HOURLY_DEMAND[local.hour] * WEEKDAY_DEMAND[local.weekday()]


def parse_span(text: str) -> timedelta:
    """'7d', '12h' or '90m' as a timedelta."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError(f"{text!r} is not a span like 7d, 12h or 90m")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


@dataclass(frozen=True)
class TicketStep:
    """One write of a ticket's lifecycle, due at `at`."""

    kind: str  # one of TICKET_STEPS
    ticket_id: uuid.UUID
    at: datetime
    agent: uuid.UUID | None = None  # assign, reassign; a comment's author (None: the ticket's own user)
    priority: str | None = None  # open, priority
    text: str = ""  # open: the subject; comment: the comment; resolve: the resolution notes
    internal: bool = False  # comment: an agent's note the customer does not see
    comment_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None  # open: the order it is about (the user is the order's)
    user_id: uuid.UUID | None = None  # open: the user of a ticket about no order


def ticket_reason(rng: random.Random, cancelled: bool, late: bool) -> str | None:
    """Why the customer of an order that just ended opens a ticket, or None (most orders get none)."""
    reason = "cancelled" if cancelled else "late" if late else "delivered"
    return reason if rng.random() < TICKET_SHARE[reason] else None


def plan_ticket(
    rng: random.Random,
    new_id: Callable[[], uuid.UUID],
    reason: str,
    opened: datetime,
    agents: list[uuid.UUID],
    minute: timedelta,
) -> list[TicketStep]:
    """A ticket's whole life from `opened` (the open step's order or user are the caller's to fill in): taken
    by an agent after a delay that depends on its priority, sometimes re-prioritised or handed to another
    agent, an internal note now and then, the customer nudging or replying, a first response (rarely none:
    resolved straight away), resolution and closing. `minute` is one simulated minute."""

    def later(start: datetime, low: float, high: float) -> datetime:
        return start + rng.uniform(low, high) * minute

    ticket = new_id()
    priority = rng.choices(PRIORITIES, PRIORITY_WEIGHTS[reason])[0]
    agent = rng.choice(agents)
    steps = [TicketStep("open", ticket, opened, priority=priority, text=rng.choice(TICKET_SUBJECTS[reason]))]

    def comment(at: datetime, author: uuid.UUID | None, text: str, internal: bool = False) -> None:
        steps.append(TicketStep("comment", ticket, at, agent=author, text=text, internal=internal, comment_id=new_id()))

    if rng.random() < 0.12:  # triage changes the priority before anyone works on it
        moved = PRIORITIES.index(priority) + (1 if rng.random() < 0.8 else -1)
        priority = PRIORITIES[min(max(moved, 0), len(PRIORITIES) - 1)]
        steps.append(TicketStep("priority", ticket, later(opened, 1, 10), priority=priority))
    assigned = later(opened, *TICKET_PICKUP_MINUTES[priority])
    steps.append(TicketStep("assign", ticket, assigned, agent=agent))
    if rng.random() < 0.2:  # the customer asks again before anyone answered
        comment(later(opened, 0.5, (assigned - opened) / minute), None, "Any update on this?")
    last = assigned
    if rng.random() < 0.95:
        answered = later(assigned, 1, 20)
        if rng.random() < 0.3:
            comment(later(assigned, 0, (answered - assigned) / minute), agent, "Checked with the restaurant.", True)
        steps.append(TicketStep("start", ticket, answered))
        comment(answered, agent, "Sorry about this, we are looking into it.")
        last = answered
        if rng.random() < 0.5:
            replied = later(answered, 5, 90)
            comment(replied, None, "Thanks, please let me know.")
            last = later(replied, 5, 60)
            comment(last, agent, "We have refunded the order.")
        if rng.random() < 0.1:  # handed over to another agent (a shift ends, a specialist)
            agent = rng.choice([a for a in agents if a != agent])
            last = later(last, 10, 120)
            steps.append(TicketStep("reassign", ticket, last, agent=agent))
    resolved = later(last, *TICKET_RESOLVE_MINUTES[priority])
    steps.append(TicketStep("resolve", ticket, resolved, text="Refunded" if reason != "account" else "Done"))
    steps.append(TicketStep("close", ticket, later(resolved, 30, 24 * 60)))
    return steps


class Generator:
    def __init__(
        self, database_url: str, seed: int | None = None, city_suffix: str = "", time_scale: float = 1.0
    ) -> None:
        self.database_url = database_url
        self.rng = random.Random(seed)
        self.city_suffix = city_suffix
        # Ids differ per suffix (same seed and suffix, same ids): Pinot's upsert tables keep one row per id
        # across runs, so a rerun with a new suffix must not reuse the ids of an earlier run.
        self._id_salt = int.from_bytes(hashlib.sha256(city_suffix.encode()).digest()[:16]) if city_suffix else 0
        self.time_scale = time_scale  # 60: a 35-minute delivery takes 35 s
        self.world = World()
        # scheduled time -> step -> orders due then
        self.schedule: dict[datetime, dict[str, list[Order]]] = defaultdict(lambda: defaultdict(list))
        # Tickets draw from a generator of their own, so the other tables' activity for a seed stays the same.
        self.ticket_rng = random.Random(None if seed is None else f"tickets-{seed}")
        self.agents: list[uuid.UUID] = []
        self.ticket_schedule: dict[datetime, list[TicketStep]] = defaultdict(list)

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128) ^ self._id_salt, version=4)

    def _ticket_uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.ticket_rng.getrandbits(128) ^ self._id_salt, version=4)

    def _near(self, lat: float, lon: float, km: float) -> tuple[float, float]:
        distance = self.rng.uniform(0, km) / 111.0
        angle = self.rng.uniform(0, 2 * math.pi)
        return lat + distance * math.sin(angle), lon + distance * math.cos(angle) / math.cos(math.radians(lat))

    # --- the world: users, restaurants, drivers --------------------------------------------------------

    def build_world(
        self,
        conn: psycopg.Connection,
        restaurants_per_city: int = 10,
        drivers_per_city: int = 15,
        users: int = 200,
    ) -> World:
        world = self.world
        world.users = [self._uuid() for _ in range(users)]
        conn.execute(
            "INSERT INTO user_service.users (id, email, full_name, dietary_preferences) "
            "SELECT id, 'user-' || id || '@example.com', 'User ' || n, prefs::jsonb "
            "FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS u(id, prefs, n)",
            (world.users, [json.dumps({"vegetarian": self.rng.random() < 0.2}) for _ in world.users]),
        )
        for city, (lat, lon) in CITIES.items():
            name = city + self.city_suffix
            for i in range(restaurants_per_city):
                r_lat, r_lon = self._near(lat, lon, 4)
                cuisine = self.rng.choice(CUISINES)
                world.restaurants.append(
                    Restaurant(self._uuid(), f"{cuisine.title()} {i} {name}", name, cuisine, r_lat, r_lon)
                )
            world.drivers[name] = [self._uuid() for _ in range(drivers_per_city)]
        conn.execute(
            "INSERT INTO restaurant_service.restaurants "
            "(id, name, cuisine_types, line1, city, location, rating, prep_time_minutes) "
            "SELECT id, name, ARRAY[cuisine, 'street food'], 'Main street 1', city, "
            "ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, 4.2, 20 "
            "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[]) "
            "AS r(id, name, cuisine, city, lat, lon)",
            tuple(
                map(
                    list,
                    zip(
                        *[(r.id, r.name, r.cuisine, r.city, r.lat, r.lon) for r in world.restaurants],
                        strict=True,
                    ),
                )
            ),
        )
        drivers = [(d, city) for city, ids in world.drivers.items() for d in ids]
        conn.execute(
            "INSERT INTO driver_service.drivers (id, user_id, full_name, city, vehicle_type, status) "
            "SELECT id, gen_random_uuid(), 'Driver ' || n, city, vehicle, 'available' "
            "FROM unnest(%s::uuid[], %s::text[], %s::text[]) WITH ORDINALITY AS d(id, city, vehicle, n)",
            ([d for d, _ in drivers], [c for _, c in drivers], [self.rng.choice(VEHICLES) for _ in drivers]),
        )
        return world

    # --- orders ----------------------------------------------------------------------------------------

    def place(self, conn: psycopg.Connection, count: int, at: datetime) -> list[Order]:
        """Place `count` orders at `at` (orders, their items in one statement, authorized payments) and
        schedule the rest of their lifecycle."""
        orders = []
        for _ in range(count):
            restaurant = self.rng.choice(self.world.restaurants)
            lat, lon = self._near(restaurant.lat, restaurant.lon, 3)
            orders.append(Order(self._uuid(), restaurant, at, self._uuid(), lat, lon))
        minutes = timedelta(minutes=1) / self.time_scale
        conn.execute(
            "INSERT INTO order_service.orders (id, user_id, restaurant_id, restaurant_name, city, cuisine, "
            "delivery_fee, tip, delivery_location, placed_at, promised_at) "
            "SELECT id, usr, rid, rname, city, cuisine, fee, tip, "
            "ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, %s, %s "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[], "
            "%s::numeric[], %s::numeric[], %s::float8[], %s::float8[]) "
            "AS o(id, usr, rid, rname, city, cuisine, fee, tip, lat, lon)",
            (
                at,
                at + PROMISED_MINUTES * minutes,
                [o.id for o in orders],
                [self.rng.choice(self.world.users) for _ in orders],
                [o.restaurant.id for o in orders],
                [o.restaurant.name for o in orders],
                [o.restaurant.city for o in orders],
                [o.restaurant.cuisine for o in orders],
                [self.rng.choice(["1.99", "2.49", "2.99"]) for _ in orders],
                [self.rng.choice(["0.00", "1.00", "2.50", "4.00"]) for _ in orders],
                [o.lat for o in orders],
                [o.lon for o in orders],
            ),
        )
        lines = [
            (o, self.rng.randint(1, 3), self.rng.choice(["7.50", "9.90", "12.25", "14.00"]))
            for o in orders
            for _ in range(self.rng.randint(1, 4))
        ]
        conn.execute(
            "INSERT INTO order_service.order_items (order_id, menu_item_id, name, quantity, unit_price, "
            "customizations) SELECT oid, gen_random_uuid(), name, q, p, c::jsonb "
            "FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::numeric[], %s::text[]) AS l(oid, name, q, p, c)",
            (
                [o.id for o, _, _ in lines],
                [DISHES[o.restaurant.cuisine] for o, _, _ in lines],
                [q for _, q, _ in lines],
                [p for _, _, p in lines],
                [json.dumps({"spice": self.rng.choice(["mild", "medium", "hot"])}) for _ in lines],
            ),
        )
        conn.execute(
            "INSERT INTO order_service.payments (order_id, amount, method, status) "
            "SELECT o.id, o.total, %s, 'authorized' FROM order_service.orders o WHERE o.id = ANY(%s)",
            (self.rng.choice(["card", "wallet"]), [o.id for o in orders]),
        )
        for order in orders:
            cancelled = self.rng.random() < CANCEL_SHARE
            due: dict[str, datetime] = {}
            for step, (after, low, high) in STEP_MINUTES.items():
                due[step] = due.get(after, at) + self.rng.uniform(low, high) * minutes
                self.schedule[due[step]]["cancel" if cancelled else step].append(order)
                if cancelled:
                    break
        return orders

    def advance(self, conn: psycopg.Connection, until: datetime) -> int:
        """Write every step scheduled at or before `until`: one statement set per kind of step, each order
        with its own time, steps in lifecycle order (an order confirmed and assigned in the same call is
        confirmed first), then the support tickets' steps due (see _tickets). Returns how many order steps
        were written."""
        due: dict[str, tuple[list[Order], list[datetime]]] = {step: ([], []) for step in STEP_ORDER}
        for at in sorted(t for t in self.schedule if t <= until):
            for step, orders in self.schedule.pop(at).items():
                due[step][0].extend(orders)
                due[step][1].extend([at] * len(orders))
        for step in STEP_ORDER:
            orders, times = due[step]
            if orders:
                getattr(self, f"_step_{step}")(conn, orders, times)
        self._tickets(conn, due, until)
        return sum(len(orders) for orders, _ in due.values())

    def _orders(self, conn: psycopg.Connection, orders: list[Order], status: str) -> None:
        conn.execute("UPDATE order_service.orders SET status = %s WHERE id = ANY(%s)", (status, [o.id for o in orders]))

    def _step_cancel(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        conn.execute(
            "UPDATE order_service.orders SET status = 'cancelled', cancel_reason = 'restaurant_unavailable' "
            "WHERE id = ANY(%s)",
            ([o.id for o in orders],),
        )
        conn.execute(
            "UPDATE order_service.payments p SET status = 'refunded', refunded_at = c.at "
            "FROM unnest(%s::uuid[], %s::timestamptz[]) AS c(id, at) WHERE p.order_id = c.id",
            ([o.id for o in orders], times),
        )

    def _step_confirm(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        self._orders(conn, orders, "confirmed")
        conn.execute(
            "INSERT INTO driver_service.deliveries (id, order_id, restaurant_id, city, pickup_location, "
            "dropoff_location, promised_at, created_at) "
            "SELECT id, oid, rid, city, ST_SetSRID(ST_MakePoint(plon, plat), 4326)::geography, "
            "ST_SetSRID(ST_MakePoint(dlon, dlat), 4326)::geography, promised, at "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::float8[], %s::float8[], "
            "%s::float8[], %s::float8[], %s::timestamptz[], %s::timestamptz[]) "
            "AS d(id, oid, rid, city, plat, plon, dlat, dlon, promised, at)",
            (
                [o.delivery_id for o in orders],
                [o.id for o in orders],
                [o.restaurant.id for o in orders],
                [o.restaurant.city for o in orders],
                [o.restaurant.lat for o in orders],
                [o.restaurant.lon for o in orders],
                [o.lat for o in orders],
                [o.lon for o in orders],
                [o.placed_at + timedelta(minutes=PROMISED_MINUTES) / self.time_scale for o in orders],
                times,
            ),
        )

    def _step_assign(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        for order in orders:
            order.driver_id = self.rng.choice(self.world.drivers[order.restaurant.city])
        self._orders(conn, orders, "preparing")
        conn.execute(
            "UPDATE driver_service.deliveries d SET driver_id = a.driver, status = 'assigned', assigned_at = a.at "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::timestamptz[]) AS a(id, driver, at) WHERE d.id = a.id",
            ([o.delivery_id for o in orders], [o.driver_id for o in orders], times),
        )

    def _step_ready(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        self._orders(conn, orders, "ready_for_pickup")

    def _step_pickup(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        self._orders(conn, orders, "picked_up")
        conn.execute(
            "UPDATE driver_service.deliveries d SET status = 'picked_up', picked_up_at = p.at "
            "FROM unnest(%s::uuid[], %s::timestamptz[]) AS p(id, at) WHERE d.id = p.id",
            ([o.delivery_id for o in orders], times),
        )
        self._pings(conn, orders, times, pickup=True)

    def _step_deliver(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime]) -> None:
        self._orders(conn, orders, "delivered")
        conn.execute(
            "UPDATE driver_service.deliveries d SET status = 'delivered', delivered_at = h.at, "
            "distance_m = ST_Distance(pickup_location, dropoff_location) * 1.3 "
            "FROM unnest(%s::uuid[], %s::timestamptz[]) AS h(id, at) WHERE d.id = h.id",
            ([o.delivery_id for o in orders], times),
        )
        conn.execute(
            "UPDATE order_service.payments p SET status = 'captured', captured_at = c.at "
            "FROM unnest(%s::uuid[], %s::timestamptz[]) AS c(id, at) WHERE p.order_id = c.id",
            ([o.id for o in orders], times),
        )
        self._pings(conn, orders, times, pickup=False)

    def _pings(self, conn: psycopg.Connection, orders: list[Order], times: list[datetime], pickup: bool) -> None:
        points = [(o.restaurant.lat, o.restaurant.lon) if pickup else (o.lat, o.lon) for o in orders]
        conn.execute(
            "INSERT INTO driver_service.driver_location_pings (driver_id, delivery_id, location, speed_mps, "
            "recorded_at) SELECT drv, del, ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, 4.5, at "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::float8[], %s::float8[], %s::timestamptz[]) "
            "AS p(drv, del, lat, lon, at)",
            (
                [o.driver_id for o in orders],
                [o.delivery_id for o in orders],
                [p[0] for p in points],
                [p[1] for p in points],
                times,
            ),
        )

    # --- support tickets -------------------------------------------------------------------------------

    def _tickets(
        self, conn: psycopg.Connection, ended: dict[str, tuple[list[Order], list[datetime]]], until: datetime
    ) -> None:
        """Plan the tickets about the orders that just ended (cancelled or delivered; now and then one about
        no order), then write every ticket step due by `until`: one statement per kind of step, in lifecycle
        order, each with its own time."""
        minute = timedelta(minutes=1) / self.time_scale
        if not self.agents:
            self.agents = [self._ticket_uuid() for _ in range(TICKET_AGENTS)]
        for step in ("cancel", "deliver"):
            for order, at in zip(*ended[step], strict=True):
                late = step == "deliver" and at > order.placed_at + PROMISED_MINUTES * minute
                reason = ticket_reason(self.ticket_rng, step == "cancel", late)
                if reason is not None:
                    self._plan_ticket(reason, at + self.ticket_rng.uniform(2, 90) * minute, order_id=order.id)
                if self.ticket_rng.random() < ACCOUNT_TICKET_SHARE:
                    user = self.ticket_rng.choice(self.world.users)
                    self._plan_ticket("account", at + self.ticket_rng.uniform(0, 60) * minute, user_id=user)
        due: dict[str, list[TicketStep]] = defaultdict(list)
        for at in sorted(t for t in self.ticket_schedule if t <= until):
            for step in self.ticket_schedule.pop(at):
                due[step.kind].append(step)
        for kind in TICKET_STEPS:
            if due[kind]:
                getattr(self, f"_ticket_{kind}")(conn, due[kind])

    def _plan_ticket(
        self, reason: str, opened: datetime, order_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
    ) -> None:
        minute = timedelta(minutes=1) / self.time_scale
        opening, *rest = plan_ticket(self.ticket_rng, self._ticket_uuid, reason, opened, self.agents, minute)
        for step in (replace(opening, order_id=order_id, user_id=user_id), *rest):
            self.ticket_schedule[step.at].append(step)

    def _ticket_open(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        # The order's user, read first: each statement stays within one service's schema.
        users = dict(
            conn.execute(
                "SELECT id, user_id FROM order_service.orders WHERE id = ANY(%s)",
                ([s.order_id for s in steps if s.order_id is not None],),
            ).fetchall()
        )
        conn.execute(
            "INSERT INTO admin_service.support_tickets (id, user_id, order_id, subject, description, priority, "
            "created_at, updated_at) SELECT id, usr, oid, subject, 'Opened by the customer: ' || subject, prio, at, at "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::timestamptz[]) "
            "AS t(id, usr, oid, subject, prio, at)",
            (
                [s.ticket_id for s in steps],
                [users[s.order_id] if s.order_id is not None else s.user_id for s in steps],
                [s.order_id for s in steps],
                [s.text for s in steps],
                [s.priority for s in steps],
                [s.at for s in steps],
            ),
        )

    def _ticket_agent(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        conn.execute(
            "UPDATE admin_service.support_tickets t SET assigned_to = a.agent "
            "FROM unnest(%s::uuid[], %s::uuid[]) AS a(id, agent) WHERE t.id = a.id",
            ([s.ticket_id for s in steps], [s.agent for s in steps]),
        )

    _ticket_assign = _ticket_reassign = _ticket_agent

    def _ticket_status(self, conn: psycopg.Connection, steps: list[TicketStep], status: str) -> None:
        conn.execute(
            "UPDATE admin_service.support_tickets SET status = %s WHERE id = ANY(%s)",
            (status, [s.ticket_id for s in steps]),
        )

    def _ticket_start(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        self._ticket_status(conn, steps, "in_progress")

    def _ticket_close(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        self._ticket_status(conn, steps, "closed")

    def _ticket_comment(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        conn.execute(
            "INSERT INTO admin_service.ticket_comments (id, ticket_id, user_id, comment, is_internal, created_at) "
            "SELECT c.id, c.tid, coalesce(c.author, t.user_id), c.text, c.internal, c.at "
            "FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::bool[], %s::timestamptz[]) "
            "AS c(id, tid, author, text, internal, at) JOIN admin_service.support_tickets t ON t.id = c.tid",
            (
                [s.comment_id for s in steps],
                [s.ticket_id for s in steps],
                [s.agent for s in steps],
                [s.text for s in steps],
                [s.internal for s in steps],
                [s.at for s in steps],
            ),
        )

    def _ticket_priority(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        conn.execute(
            "UPDATE admin_service.support_tickets t SET priority = p.prio "
            "FROM unnest(%s::uuid[], %s::text[]) AS p(id, prio) WHERE t.id = p.id",
            ([s.ticket_id for s in steps], [s.priority for s in steps]),
        )

    def _ticket_resolve(self, conn: psycopg.Connection, steps: list[TicketStep]) -> None:
        conn.execute(
            "UPDATE admin_service.support_tickets t SET status = 'resolved', resolved_at = r.at, "
            "resolution_notes = r.notes FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[]) AS r(id, at, notes) "
            "WHERE t.id = r.id",
            ([s.ticket_id for s in steps], [s.at for s in steps], [s.text for s in steps]),
        )

    # --- drivers of the simulation ---------------------------------------------------------------------

    @contextmanager
    def connections(self, application_name: str = "nibble-generate") -> Iterator[ServiceConnections]:
        """A connection per service, those writing personal fields with the data keys (checked before anything
        is written: a missing or wrong key is one line, migration 0023)."""
        ring = keys.load()
        with key_errors(), ServiceConnections(self.database_url, application_name, "nibble generate") as conn:
            for service in SEALING_SERVICES:
                use_keys(conn.of(service), ring)
                conn.of(service).commit()  # a first use's registration, which the next service's check waits for
            yield conn

    def run_batch(self, orders: int, start: datetime, per_minute: int = 50) -> None:
        """Simulated time, as fast as the database goes: `per_minute` orders each simulated minute, every
        lifecycle played to its end. Deterministic for a seed."""
        with self.connections() as conn:
            if not self.world.restaurants:
                self.build_world(conn)
                conn.commit()
            placed, minute = 0, 0
            while placed < orders:
                at = start + timedelta(minutes=minute) / self.time_scale
                self.advance(conn, at)
                count = min(per_minute, orders - placed)
                self.place(conn, count, at)
                conn.commit()
                placed += count
                minute += 1
            self.advance(conn, datetime.max.replace(tzinfo=UTC))
            conn.commit()

    def run_history(self, span: timedelta, peak_per_minute: float, end: datetime | None = None) -> int:
        """The `span` before `end` (default: now), as fast as the database goes: orders at `demand` times
        `peak_per_minute`, placed minute by minute, their later steps written every ten simulated minutes
        (each with its own time), one commit per simulated hour. Placing stops an hour before `end`, so
        every lifecycle ends before it; returns the orders placed."""
        end = (end or datetime.now(UTC)).replace(second=0, microsecond=0)
        at = end - span
        placed, carry = 0, 0.0
        with self.connections() as conn:
            if not self.world.restaurants:
                # Enough drivers that a city's dinner peak keeps about half of them busy (a delivery
                # takes 25-45 minutes from assignment): driver utilisation stays below 100 %.
                drivers = max(15, math.ceil(peak_per_minute / len(CITIES) * 40 / 0.5))
                self.build_world(conn, drivers_per_city=drivers)
                conn.commit()
            while at < end - timedelta(hours=1):
                if at.minute % 10 == 0:
                    self.advance(conn, at)
                carry += peak_per_minute * demand(at)
                count, carry = int(carry), carry - int(carry)
                if count:
                    self.place(conn, count, at)
                    placed += count
                at += timedelta(minutes=1)
                if at.minute == 0:
                    conn.commit()
                    if at.hour == 0:
                        print(f"[generate] history: {at:%a %d %b} reached, {placed} orders placed", flush=True)
            self.advance(conn, end)
            conn.commit()
        return placed

    def run_live(
        self,
        rate: float,
        duration_s: float,
        ticks_per_s: int = 1,
        on_commit: Callable[[ServiceConnections], None] | None = None,
    ) -> int:
        """Real time: about `rate` events/s for `duration_s` seconds, one commit per tick; returns orders.
        `on_commit` sees the connection after each commit (the freshness benchmark stamps commits there)."""
        orders_per_tick = rate / EVENTS_PER_ORDER / ticks_per_s
        placed, carry = 0, 0.0
        with self.connections() as conn:
            if not self.world.restaurants:
                self.build_world(conn)
                conn.commit()
            started = time.monotonic()
            tick = 0
            while (elapsed := time.monotonic() - started) < duration_s:
                now = datetime.now(UTC)
                self.advance(conn, now)
                carry += orders_per_tick
                count, carry = int(carry), carry - int(carry)
                if count:
                    self.place(conn, count, now)
                    placed += count
                conn.commit()
                if on_commit is not None:
                    on_commit(conn)
                tick += 1
                if tick % (10 * ticks_per_s) == 0:
                    print(f"[generate] {elapsed:5.0f} s: {placed} orders placed", flush=True)
                time.sleep(max(0.0, started + tick / ticks_per_s - time.monotonic()))
        return placed
