"""The service table of the local stack: each service one row (its ports, address, pid file, log, how to start,
probe and stop it), and how the JVM services (Kafka, ZooKeeper, the Pinot roles, the schema registry) start."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors import http, kafka
from pipeline.config import Settings
from pipeline.devstack import configs, installers, processes, superset
from pipeline.devstack.installers import JAVA, Classpaths, Report
from pipeline.devstack.postgres_cluster import Cluster
from pipeline.errors import redact
from pipeline.resources import STACK_RECIPES

# Pinot 0.11 reflects into JDK internals; these are the opens its own test runs pass on Java 17.
JAVA_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.nio", "sun.nio.ch", "java.lang", "java.util", "java.lang.reflect", "jdk.internal.misc")
] + ["-Dio.netty.tryReflectionSetAccessible=true"]
HEAPS = {
    "kafka": "1g",
    "zookeeper": "256m",
    "pinot-controller": "1g",
    "pinot-broker": "1g",
    "pinot-server": "6g",
    # Each of the two servers holds a whole replica (and its dedup and upsert keys): the same heap as one.
    "pinot-server-2": "6g",
    "pinot-minion": "1g",  # moves one bucket of one table at a time (docs/pinot.md)
    "schema-registry": "256m",  # a few dozen schemas; ~300 MB resident
}
# A Pinot server killed -9 leaves its ZooKeeper session behind, and on start Helix sleeps that session's
# timeout + 5 s before it joins ("Found another instance with same instance name"): 35 s of a restart at the
# default 30 s (docs/operations.md, "Restart time"). 10 s still allows 3 missed heartbeats (one every third of
# it) before ZooKeeper drops a live server; ZooKeeper accepts 4-40 s at its tickTime of 2 s.
PINOT_SERVER_ZK_SESSION_TIMEOUT_MS = 10_000
REGISTRY_MIN_JAVA = 21  # Apicurio Registry 3.x is built for Java 21
PINOT_MAIN = {
    "pinot-controller": "StartController",
    "pinot-broker": "StartBroker",
    "pinot-server": "StartServer",
    "pinot-server-2": "StartServer",
    "pinot-minion": "StartMinion",
}


@dataclass(frozen=True)
class Service:
    name: str
    phase: int  # a phase starts once every service of the earlier phases is healthy
    ports: dict[str, int]  # setting name -> port it listens on; the first is the service's own
    address: str
    pid_file: Path
    log_file: Path
    start: Callable[[], None]
    healthy: Callable[[], bool]
    stop: Callable[[int], None]  # given its live pid

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    def answering(self) -> list[str]:
        """The settings of its ports something accepts connections on."""
        taken = []
        for setting, port in self.ports.items():
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    taken.append(setting)
        return taken


def service_table(settings: Settings, state: Path, cluster: Cluster, report: Report) -> list[Service]:
    s, e = settings.stack, settings.endpoints
    logs, pids = state / "logs", state / "pids"
    jvm = JavaServices(settings, state, report)

    def java(name: str, phase: int, ports: dict[str, int], address: str, healthy: Callable[[], bool]) -> Service:
        log_file, pid_file = logs / f"{name}.log", pids / f"{name}.pid"
        return Service(
            name,
            phase,
            ports,
            address,
            pid_file,
            log_file,
            start=lambda: jvm.start(name, log_file, pid_file),
            healthy=healthy,
            stop=processes.terminate,
        )

    postgres_log = cluster.root / "server.log"  # written by the server itself, as the postgres user
    # The high-availability profile's second server (NIBBLE_PINOT_REPLICAS=2, docs/operations.md).
    second_server = []
    if settings.pinot.replicas > 1:
        second_ports = {
            "pinot_server_2_port": s.pinot_server_2_port,
            "pinot_server_2_admin_port": s.pinot_server_2_admin_port,
        }
        second_health = f"http://127.0.0.1:{s.pinot_server_2_admin_port}/health"
        second_server.append(
            java(
                "pinot-server-2", 2, second_ports, f"127.0.0.1:{s.pinot_server_2_port}", lambda: http.ok(second_health)
            )
        )
    return [
        Service(
            "postgres",
            0,
            {"postgres_port": s.postgres_port},
            redact(e.database_url),
            cluster.data / "postmaster.pid",
            postgres_log,
            start=lambda: cluster.start(postgres_log),
            healthy=cluster.healthy,
            stop=lambda _pid: cluster.pg_ctl("stop", "-m", "fast"),
        ),
        java(
            "kafka",
            0,
            {"kafka_port": s.kafka_port, "kafka_controller_port": s.kafka_controller_port},
            e.kafka_bootstrap_servers,
            lambda: kafka.reachable(e.kafka_bootstrap_servers),
        ),
        java(
            "zookeeper",
            0,
            {"zookeeper_port": s.zookeeper_port},
            f"127.0.0.1:{s.zookeeper_port}",
            lambda: zookeeper_healthy(s.zookeeper_port),
        ),
        java(
            "pinot-controller",
            1,
            {"pinot_controller_port": s.pinot_controller_port},
            e.pinot_controller_url,
            lambda: http.ok(f"{e.pinot_controller_url}/health"),
        ),
        java(
            "pinot-broker",
            2,
            {"pinot_broker_port": s.pinot_broker_port},
            e.pinot_broker_url,
            lambda: http.ok(f"{e.pinot_broker_url}/health"),
        ),
        java(
            "pinot-server",
            2,
            {
                "pinot_server_port": s.pinot_server_port,
                "pinot_server_admin_port": s.pinot_server_admin_port,
                "pinot_server_grpc_port": s.pinot_server_grpc_port,
            },
            f"127.0.0.1:{s.pinot_server_port}",
            lambda: http.ok(f"http://127.0.0.1:{s.pinot_server_admin_port}/health"),
        ),
        *second_server,
        java(
            "pinot-minion",
            2,
            {"pinot_minion_port": s.pinot_minion_port},
            f"http://127.0.0.1:{s.pinot_minion_port}",
            lambda: http.ok(f"http://127.0.0.1:{s.pinot_minion_port}/health"),
        ),
        Service(
            "schema-registry",
            0,
            {
                "schema_registry_port": s.schema_registry_port,
                "schema_registry_management_port": s.schema_registry_management_port,
            },
            e.schema_registry_url,
            pids / "schema-registry.pid",
            logs / "schema-registry.log",
            start=lambda: jvm.start_registry(logs / "schema-registry.log", pids / "schema-registry.pid"),
            healthy=lambda: http.ok(f"http://127.0.0.1:{s.schema_registry_management_port}/health/ready"),
            stop=processes.terminate,
        ),
        Service(
            "redis",
            0,
            {"redis_port": s.redis_port},
            f"redis://127.0.0.1:{s.redis_port}",
            pids / "redis.pid",
            logs / "redis.log",
            start=lambda: superset.start_redis(settings, logs / "redis.log", pids / "redis.pid"),
            healthy=lambda: superset.redis_healthy(s.redis_port),
            stop=processes.terminate,
        ),
        Service(
            "superset",
            1,
            {"superset_port": s.superset_port},
            e.superset_url,
            pids / "superset.pid",
            logs / "superset.log",
            start=lambda: superset.start_superset(settings, logs / "superset.log", pids / "superset.pid", report),
            healthy=lambda: superset.superset_healthy(settings),
            stop=processes.terminate,
        ),
    ]


class JavaServices:
    """How Kafka, ZooKeeper, the Pinot roles and the schema registry start: their config files written from
    configs.py, a JVM on the runtime's classpath, output to the service's log."""

    def __init__(self, settings: Settings, state: Path, report: Report) -> None:
        self.settings = settings
        self.state = state
        self.report = report
        self.classpaths = Classpaths(state, report)

    def start(self, name: str, log_file: Path, pid_file: Path) -> None:
        runtime = "kafka" if name == "kafka" else "pinot"
        classpath = self.classpaths.of(runtime)
        if name.startswith("pinot-server"):  # the one role that decodes Kafka messages
            classpath = f"{installers.pinot_decoder(self.state, self.report)}:{classpath}"
        arguments = self._kafka_arguments(classpath) if name == "kafka" else self._pinot_arguments(name)
        log4j = STACK_RECIPES / runtime / "log4j2.properties"
        heap = HEAPS[name]
        command = [JAVA, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", *JAVA_OPENS]
        if name.startswith("pinot-server"):
            command.append(f"-Dzk.session.timeout={PINOT_SERVER_ZK_SESSION_TIMEOUT_MS}")  # read by Helix
        command += [f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, *arguments]
        processes.spawn(command, log_file, pid_file, cwd=self.state)

    def start_registry(self, log_file: Path, pid_file: Path) -> None:
        """Apicurio Registry from its Maven Central tar.gz (untarred once under the state dir), schemas in a
        file-backed H2 database there, so they survive a restart."""
        java = installers.newest_java(REGISTRY_MIN_JAVA, "schema-registry")
        root = self.state / "schema-registry"
        app = installers.unpacked(Path(self.classpaths.of("apicurio")), root, self.report)
        properties = configs.registry_properties(self.settings.stack, root)
        heap = HEAPS["schema-registry"]
        command = [java, f"-Xms{heap}", f"-Xmx{heap}", *(f"-D{key}={value}" for key, value in properties.items())]
        processes.spawn([*command, "-jar", str(app / "quarkus-run.jar")], log_file, pid_file, cwd=root)

    def _kafka_arguments(self, classpath: str) -> list[str]:
        """Write server.properties (formatting the storage on first start); the broker's main class and args."""
        root = self.state / "kafka"
        data = root / "data"
        properties = root / "server.properties"
        root.mkdir(parents=True, exist_ok=True)
        properties.write_text(configs.kafka_properties(self.settings.stack, data))
        if not (data / "meta.properties").exists():
            format_storage = ["kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()), "-c", str(properties)]
            processes.run([JAVA, "-cp", classpath, *format_storage], "kafka: format storage")
        return ["kafka.Kafka", str(properties)]

    def _pinot_arguments(self, name: str) -> list[str]:
        """Write the role's properties file; the main class and arguments that read it."""
        root = self.state / "pinot"
        root.mkdir(parents=True, exist_ok=True)
        config = root / f"{name}.conf"
        rendered = configs.pinot_config(name, self.settings.stack, root, self.settings.pinot.replicas)
        config.write_text(configs.properties(rendered))
        if name == "zookeeper":
            return ["org.apache.zookeeper.server.ZooKeeperServerMain", str(config)]
        return ["org.apache.pinot.tools.admin.PinotAdministrator", PINOT_MAIN[name], "-configFileName", str(config)]


def zookeeper_healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            # `srvr` is on ZooKeeper's default four-letter-word whitelist.
            sock.sendall(b"srvr")
            return b"Zookeeper version" in sock.recv(1024)
    except OSError:
        return False
