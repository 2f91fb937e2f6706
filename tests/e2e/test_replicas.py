"""Two replicas survive the loss of a Pinot server (issue 19, item 3): every table of this module placed twice,
once on each of two servers, while a loop runs every library query; one server is killed with `kill -9`,
restarted, catches up, and the answers equal PostgreSQL.

The stack is shared, so the module's tables live on servers of a tenant of their own: both servers get the tag
`nibble_ha` beside their own, the tables (prefixed, on topics of their own) are placed there with two replicas,
and the killed server is the second one (`pinot-server-2`, the high-availability profile's), which the stack's
own tables never use unless the stack runs that profile (NIBBLE_PINOT_REPLICAS=2), where they have a replica on
each server too. The test starts it when it is not running, and afterwards stops it and forgets it again.

Each broker answer reports how many servers it asked and how many answered: an answer from fewer is partial.
The test counts library queries that failed and answers that were partial, and measures how long after the
kill answers were whole again, and how long the restarted server took to hold every segment and consume as far
as its peer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors.pinot import Controller, ControllerError, broker_connection
from pipeline.analytics.queries import library, run_query
from pipeline.analytics.tables import apply, desired_specs
from pipeline.config import Settings
from pipeline.devstack.generator import CITIES, Generator
from pipeline.devstack.stack import LocalStack
from pipeline.errors import NibbleError
from tests.support.database import scratch_database
from tests.support.exactness import QUERY_CHECKS, Ingested, await_pinot, backlog, record_committed_events
from tests.support.history import drop_tables_and_topics
from tests.support.polling import wait_until
from tests.support.prefixed_tables import PrefixedCursor
from tests.support.relay import RelayProcess, delete_subjects
from tests.support.services import Services
from tests.support.ticket_queries import TICKET_QUERY_CHECKS

# The replica's start waits for its consumption to catch up (at most 45 s, pipeline/devstack/configs.py), twice.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SECOND = "pinot-server-2"
TENANT = "nibble_ha"
TAGS = [f"{TENANT}_OFFLINE", f"{TENANT}_REALTIME"]
ORDERS = 300
OUTAGE_S = 35  # longer than ZooKeeper's session timeout (30 s): the external view changes within it
WHOLE_AIM_S = 10
CHECKS = {**QUERY_CHECKS, **TICKET_QUERY_CHECKS}
LAT, LON = CITIES["Berlin"]


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic time the query started
    query: str
    failed: str | None  # the error of a library query that failed
    partial: bool  # a broker answer (of any part, or a try) came from fewer servers than it asked


class RecordingCursor:
    """A pinotdb cursor that notes, for each statement, whether the broker answered from every server it asked
    (pinotdb raises on an answer from fewer, after keeping its statistics)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.partial = False

    def execute(self, query: str, params: Any = None) -> Any:
        try:
            return self._cursor.execute(query, params)
        finally:
            stats = self._cursor.query_stats or {}
            queried, responded = stats.get("numServersQueried", -1), stats.get("numServersResponded", -1)
            self.partial |= 0 <= responded < queried

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._cursor, attribute)


@dataclass
class QueryLoop:
    """Every library query on the module's tables, one after another, until stopped."""

    broker_url: str
    prefix: str
    names: set[str]
    scope: Ingested
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="replica-queries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _run(self) -> None:
        connection = broker_connection(self.broker_url, 10_000)
        while not self._stop.is_set():
            for name, query in library().items():
                recording = RecordingCursor(connection.cursor())
                params: dict[str, Any] = {"since": self.scope.since, "until": self.scope.until}
                if "city" in query.parameters:
                    params["city"] = self.scope.cities[0]
                if "grain" in query.parameters:
                    params["grain"] = "hour"
                if "lat" in query.parameters:
                    params |= {"lat": LAT, "lon": LON, "radius_m": 3000.0}
                started, failed = time.monotonic(), None
                try:
                    run_query(PrefixedCursor(recording, self.prefix, self.names), name, **params)
                except NibbleError as exc:
                    failed = str(exc).splitlines()[0]
                self.answers.append(Answer(started, name, failed, recording.partial))


@dataclass
class Replicated:
    settings: Settings
    stack: LocalStack
    controller: Controller
    scope: Ingested
    generator: Generator
    names: set[str]

    @property
    def tables(self) -> list[str]:
        return [spec.name for spec in desired_specs(self.settings)]


def server_ids(settings: Settings) -> list[str]:
    """The two servers' Helix instance names (Pinot names a server by its query host and port)."""
    s = settings.stack
    return [f"Server_127.0.0.1_{s.pinot_server_port}", f"Server_127.0.0.1_{s.pinot_server_2_port}"]


def with_tags(tags: list[str], extra: list[str]) -> list[str]:
    return [*tags, *(tag for tag in extra if tag not in tags)]


@pytest.fixture
def replicated(services: Services) -> Iterator[Replicated]:
    tag = uuid.uuid4().hex[:8]
    table_prefix, topic_prefix = f"ha{tag}_", f"ha{tag}."
    base = services.settings(topic_prefix)
    pinot = base.pinot.model_copy(update={"table_prefix": table_prefix, "replicas": 2, "server_tenant": TENANT})
    settings = base.model_copy(update={"pinot": pinot})
    stack = LocalStack(settings)  # the profile's service table: it has pinot-server-2
    controller = Controller(settings.endpoints.pinot_controller_url)
    first, second = server_ids(settings)
    s = settings.stack
    started = stack.pid(SECOND) is None  # else the stack runs the profile: the server is the stack's own
    original = {first: controller.instance(first)["tags"]}
    if started:
        # Registered with the module's tag only before it joins: untagged it would take DefaultTenant's tags,
        # and with them new segments of the stack's own tables.
        if controller.instance(second) is None:
            controller.add_server("127.0.0.1", s.pinot_server_2_port, s.pinot_server_2_admin_port, TAGS)
        controller.set_tags(second, TAGS)
    else:
        original[second] = controller.instance(second)["tags"]
    names = {spec.name.removeprefix(table_prefix) for spec in desired_specs(settings)}
    relay = None
    try:
        for server, tags in original.items():
            controller.set_tags(server, with_tags(tags, TAGS))
        if started:
            stack.restart(SECOND)  # down: started, and waited for
        with scratch_database(services.database_url, "replicas", migrated=True) as db:
            record_committed_events(db)
            apply(settings)
            generator = Generator(db, seed=19, city_suffix=f"-{tag}")
            now = datetime.now(UTC).replace(microsecond=0)
            generator.run_batch(ORDERS, now - timedelta(hours=3), per_minute=20)
            with psycopg.connect(db) as conn:
                generator.place(conn, 30, now - timedelta(minutes=10))
                generator.advance(conn, now)
            relay = RelayProcess(services, db, topic_prefix)
            cursor = PrefixedCursor(broker_connection(services.pinot_broker_url).cursor(), table_prefix, names)
            cities = [city + f"-{tag}" for city in CITIES]
            scope = Ingested(db, cities, now - timedelta(hours=4), now + timedelta(days=1), cursor)
            wait_until(lambda: backlog(db) == 0, 300, what="the relay to drain the outboxes")
            comparison = await_pinot(scope, 300)
            assert comparison.equal, comparison.report()
            yield Replicated(settings, stack, controller, scope, generator, names)
    finally:
        if relay is not None and relay.running:
            relay.terminate()
        drop_tables_and_topics(settings, topic_prefix)
        delete_subjects(topic_prefix)
        if started:
            pid = stack.pid(SECOND)
            if pid is not None:
                stack.service(SECOND).stop(pid)
            stack.service(SECOND).pid_file.unlink(missing_ok=True)
            # Refused while the controller still counts it live or an ideal state names a segment on it.
            wait_until(lambda: _forgotten(controller, second), 120, what=f"{second} to be forgotten")
        for server, tags in original.items():
            controller.set_tags(server, tags)


def _forgotten(controller: Controller, instance: str) -> bool:
    try:
        controller.delete_instance(instance)
    except ControllerError:  # refused until it has left: try again
        return False
    return True


def caught_up(controller: Controller, tables: list[str], servers: list[str]) -> bool:
    """Every segment of `tables` is where its ideal state puts it, and both servers consume each consuming
    segment, to the same offsets."""
    for table in tables:
        if not controller.online(table):
            return False
        for replicas in controller.consuming_replicas(table).values():
            reached = {str(replica.get("partitionToOffsetMap")) for replica in replicas.values()}
            states = {replica.get("consumerState") for replica in replicas.values()}
            if sorted(replicas) != sorted(servers) or len(reached) != 1 or states != {"CONSUMING"}:
                return False
    return True


@dataclass(frozen=True)
class Outage:
    """What the query loop saw from a fault on until the server was back and caught up."""

    fault: str
    answers: list[Answer]
    away_s: float  # fault -> the server healthy again (its /health answers once it has caught up)
    caught_up_s: float  # fault -> every segment in place and both replicas at the same offsets

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.failed]

    @property
    def partial(self) -> list[Answer]:
        return [a for a in self.answers if a.partial]

    def whole_again_s(self, since: float) -> float:
        """Seconds from `since` to the last partial answer (0: none)."""
        return max((a.at - since for a in self.partial), default=0.0)

    def line(self, since: float) -> str:
        return (
            f"{self.fault}: {len(self.answers)} library queries, failed {len(self.failed)}, partial "
            f"{len(self.partial)}, whole again {self.whole_again_s(since):.1f} s after the fault; healthy again "
            f"after {self.away_s:.1f} s, caught up after {self.caught_up_s:.1f} s"
        )


def test_a_server_lost_or_restarted_under_queries_loses_no_answer(replicated: Replicated) -> None:
    r = replicated
    servers = server_ids(r.settings)
    loop = QueryLoop(r.settings.endpoints.pinot_broker_url, r.settings.pinot.table_prefix, r.names, r.scope)

    def back(fault: str, started: float) -> Outage:
        r.stack.restart(SECOND)  # down: started; either way waited for until healthy
        healthy = time.monotonic()
        wait_until(lambda: caught_up(r.controller, r.tables, servers), 300, what=f"{SECOND} to catch up")
        caught = time.monotonic()
        time.sleep(5)  # answers from both replicas again
        answers = [a for a in loop.answers if a.at >= started]
        return Outage(fault, answers, healthy - started, caught - started)

    loop.start()
    try:
        wait_until(lambda: len(loop.answers) >= len(library()), 120, what="a first round of every query")
        before = len(loop.answers)
        killed = time.monotonic()
        r.stack.kill(SECOND)
        # Written while the server is away: the restarted one must consume it to catch up.
        with psycopg.connect(r.scope.db) as conn:
            r.generator.place(conn, 30, datetime.now(UTC))
            conn.commit()
        time.sleep(max(0.0, killed + OUTAGE_S - time.monotonic()))
        crash = back(f"{SECOND} kill -9, {OUTAGE_S} s away", killed)
        baseline = loop.answers[:before]
        print(f"\nREPLICAS before the fault: {before} library queries, failed {sum(1 for a in baseline if a.failed)}")
        print(f"REPLICAS {crash.line(killed)}")
        restarted = time.monotonic()
        rolling = back(f"{SECOND} restarted (graceful stop)", restarted)
        print(f"REPLICAS {rolling.line(restarted)}")
    finally:
        loop.stop()
    wait_until(lambda: backlog(r.scope.db) == 0, 300, what="the relay to drain the outboxes")
    comparison = await_pinot(r.scope, 300)
    print(f"REPLICAS Pinot equals PostgreSQL: {comparison.equal}")
    for answer in [*crash.failed, *rolling.failed][:5]:
        print(f"  failed: {answer.query}: {answer.failed}")
    assert comparison.equal, comparison.report()
    # Both replicas answer by turns (strictReplicaGroup): two rounds of checks read each of them.
    for _ in range(2):
        for check in CHECKS.values():
            check(r.scope)
    assert not crash.failed and not rolling.failed, "library queries failed while a replica was away"
    assert crash.whole_again_s(killed) <= WHOLE_AIM_S, f"partial answers until {crash.whole_again_s(killed):.1f} s"
    assert not rolling.partial, "a graceful restart left answers without a server"
