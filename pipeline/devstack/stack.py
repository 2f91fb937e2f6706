"""The local stack: the real services on this machine, without Docker (`nibble stack up | down | status`).

PostgreSQL 15 + PostGIS and Redis come from Debian packages, Kafka (KRaft), Pinot and the schema registry
(Apicurio) from Maven Central through the poms in stack/maven (jars stay in ~/.m2, so a second `up` downloads
nothing), Apache Superset from PyPI into a virtualenv of its own (pipeline/devstack/superset.py). Every service
is one row of the service table: its ports, pid file, log, how to start, probe and stop it. `down` stops
exactly the pids the pid files name.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from connectors import http, kafka, postgres
from pipeline.config import SERVICE_LOGINS, TOOL_LOGINS, Settings, password_file
from pipeline.devstack import processes, superset
from pipeline.devstack.processes import StackError
from pipeline.errors import redact
from pipeline.resources import PINOT, STACK_RECIPES

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEBIAN_PACKAGES = {
    # package: a file it installs, to tell whether it is there
    "postgresql-15": PG_BIN / "postgres",
    "postgresql-15-postgis-3": Path("/usr/share/postgresql/15/extension/postgis.control"),
    "postgresql-15-partman": Path("/usr/share/postgresql/15/extension/pg_partman.control"),
    "openjdk-17-jre-headless": Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
    "openjdk-17-jdk-headless": Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/javac"),  # builds the Pinot decoder
    "maven": Path("/usr/bin/mvn"),
    "redis-server": Path(superset.REDIS_SERVER),
}
JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")
JAVA = str(JAVA_HOME / "bin" / "java")
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
    "pinot-minion": "1g",  # moves one bucket of one table at a time (docs/pinot.md)
    "schema-registry": "256m",  # a few dozen schemas; ~300 MB resident
}
REGISTRY_MIN_JAVA = 21  # Apicurio Registry 3.x is built for Java 21
START_TIMEOUT_S = 600  # a Pinot server reloading a few million rows is healthy only after minutes

Report = Callable[[str], None]


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


class LocalStack:
    """The local services, their files under the state dir, and how to start, probe and stop them."""

    def __init__(self, settings: Settings, report: Report = print) -> None:
        self.settings = settings
        self.report = report
        self.state = settings.stack.state_dir.resolve()
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        self.services = self._service_table()
        self.by_name = {service.name: service for service in self.services}
        self._classpaths: dict[str, str] = {}

    def _service_table(self) -> list[Service]:
        s, e = self.settings.stack, self.settings.endpoints
        pg_root = self.state / "postgres"

        def java(name: str, phase: int, ports: dict[str, int], address: str, healthy: Callable[[], bool]) -> Service:
            runtime = "kafka" if name == "kafka" else "pinot"
            return Service(
                name,
                phase,
                ports,
                address,
                self.pids / f"{name}.pid",
                self.logs / f"{name}.log",
                start=lambda: self._start_java(name, runtime),
                healthy=healthy,
                stop=processes.terminate,
            )

        return [
            Service(
                "postgres",
                0,
                {"postgres_port": s.postgres_port},
                redact(e.database_url),
                pg_root / "data" / "postmaster.pid",
                pg_root / "server.log",  # written by the server itself, as the postgres user
                start=self._start_postgres,
                healthy=self._postgres_healthy,
                stop=lambda _pid: self._pg_ctl("stop", "-m", "fast"),
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
                self._zookeeper_healthy,
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
                self.pids / "schema-registry.pid",
                self.logs / "schema-registry.log",
                start=self._start_registry,
                healthy=lambda: http.ok(f"http://127.0.0.1:{s.schema_registry_management_port}/health/ready"),
                stop=processes.terminate,
            ),
            Service(
                "redis",
                0,
                {"redis_port": s.redis_port},
                f"redis://127.0.0.1:{s.redis_port}",
                self.pids / "redis.pid",
                self.logs / "redis.log",
                start=lambda: superset.start_redis(self.settings, self.logs / "redis.log", self.pids / "redis.pid"),
                healthy=lambda: superset.redis_healthy(s.redis_port),
                stop=processes.terminate,
            ),
            Service(
                "superset",
                1,
                {"superset_port": s.superset_port},
                e.superset_url,
                self.pids / "superset.pid",
                self.logs / "superset.log",
                start=lambda: superset.start_superset(
                    self.settings, self.logs / "superset.log", self.pids / "superset.pid", self.report
                ),
                healthy=lambda: superset.superset_healthy(self.settings),
                stop=processes.terminate,
            ),
        ]

    def pid(self, name: str) -> int | None:
        """The live pid of a service we started, or None."""
        return processes.read_pid(self.by_name[name].pid_file)

    # --- start ---------------------------------------------------------------------------------------

    def up(self) -> None:
        for directory in (self.state, self.logs, self.pids):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_debian_packages(self.report)
        for phase in sorted({service.phase for service in self.services}):
            started = []
            for service in (s for s in self.services if s.phase == phase):
                pid = self.pid(service.name)
                if pid is not None:
                    if service.healthy():
                        self.report(f"{service.name}: already running (pid {pid})")
                        continue
                    self.report(f"{service.name}: running (pid {pid}) but not healthy yet; waiting")
                else:
                    self._check_ports_free(service)
                    self.report(f"{service.name}: starting on port {service.port}")
                    service.start()
                started.append(service)
            for service in started:
                self._wait_healthy(service)
        if (self.state / "postgres" / "needs-bootstrap").exists():
            self._bootstrap_postgres()
        self._set_login_passwords()

    def _check_ports_free(self, service: Service) -> None:
        taken = _answering(service.ports)
        if taken:
            setting = taken[0]
            raise StackError(
                f"{service.name}: port {service.ports[setting]} is already taken by a process this stack did not "
                f"start; stop it or choose another port with NIBBLE_{setting.upper()}"
            )

    def _wait_healthy(self, service: Service) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.healthy():
                self.report(f"{service.name}: healthy at {service.address}")
                return
            if self.pid(service.name) is None:
                break
            time.sleep(1)
        state = "exited" if self.pid(service.name) is None else f"not healthy after {START_TIMEOUT_S} s"
        tail = processes.tail(service.log_file, 40)
        raise StackError(f"{service.name} {state}; last lines of {service.log_file}:\n{tail}")

    def _classpath(self, runtime: str) -> str:
        """Resolve a runtime's jars from Maven Central once; later calls read the cached classpath."""
        if runtime in self._classpaths:
            return self._classpaths[runtime]
        pom = STACK_RECIPES / "maven" / runtime / "pom.xml"
        cached = self.state / f"{runtime}.classpath"
        if cached.exists() and cached.stat().st_mtime >= pom.stat().st_mtime:
            classpath = cached.read_text().strip()
            if all(Path(jar).exists() for jar in classpath.split(":")):
                self._classpaths[runtime] = classpath
                return classpath
        self.report(f"{runtime}: resolving jars from Maven Central (first run downloads them into ~/.m2)")
        command = ["mvn", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={cached}"]
        output: list[str] = []
        downloaded = 0
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as maven:
            assert maven.stdout is not None
            for line in maven.stdout:
                output.append(line)
                if line.startswith("Downloaded from") and ".jar " in line:
                    downloaded += 1
                    if downloaded % 25 == 0:
                        self.report(f"{runtime}: {downloaded} jars downloaded so far")
        if maven.returncode != 0:
            raise StackError(f"{runtime}: Maven could not resolve {pom}:\n{''.join(output[-40:])}")
        self._classpaths[runtime] = cached.read_text().strip()
        return self._classpaths[runtime]

    def _start_java(self, name: str, runtime: str) -> None:
        classpath = self._classpath(runtime)
        if name == "pinot-server":  # the one role that decodes Kafka messages
            classpath = f"{self._pinot_decoder()}:{classpath}"
        arguments = self._kafka_arguments(classpath) if name == "kafka" else self._pinot_arguments(name)
        log4j = STACK_RECIPES / runtime / "log4j2.properties"
        heap = HEAPS[name]
        command = [JAVA, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", *JAVA_OPENS]
        command += [f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, *arguments]
        service = self.by_name[name]
        processes.spawn(command, service.log_file, service.pid_file, cwd=self.state)

    def _pinot_decoder(self) -> Path:
        """The project's decoder jar (pinot/decoder), built by Maven under the state dir when its sources are
        newer than the jar."""
        project = PINOT / "decoder"
        out = self.state / "pinot-decoder"
        jar = out / "nibble-pinot-decoder.jar"
        sources = [project / "pom.xml", *(project / "src").rglob("*.java")]
        if jar.exists() and jar.stat().st_mtime >= max(source.stat().st_mtime for source in sources):
            return jar
        self.report("pinot-server: building the wire-format decoder (pinot/decoder)")
        command = ["mvn", "-B", "-q", "-f", str(project / "pom.xml"), "package", f"-Dout={out}"]
        processes.run(command, "pinot decoder: mvn package", env={**os.environ, "JAVA_HOME": str(JAVA_HOME)})
        return jar

    def _start_registry(self) -> None:
        """Apicurio Registry from its Maven Central tar.gz (untarred once under the state dir), schemas in a
        file-backed H2 database there, so they survive a restart."""
        java = newest_java(REGISTRY_MIN_JAVA, "schema-registry")
        archive = Path(self._classpath("apicurio"))
        root = self.state / "schema-registry"
        app = root / archive.name.removesuffix(".tar.gz")
        if not (app / "quarkus-run.jar").exists():
            self.report(f"schema-registry: unpacking {archive.name}")
            unpacking = root / "unpacking"
            shutil.rmtree(unpacking, ignore_errors=True)
            with tarfile.open(archive) as tar:
                tar.extractall(unpacking, filter="data")
            unpacking.rename(app)  # whole or not at all: a crash mid-untar leaves only `unpacking`
        s = self.settings.stack
        properties = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": s.schema_registry_port,
            "quarkus.management.host": "127.0.0.1",
            "quarkus.management.port": s.schema_registry_management_port,
            # H2 writes a commit to the file only after WRITE_DELAY (500 ms by default): a registry killed within
            # it would forget schemas (and hand their ids out again). 0: each commit reaches the file at once.
            "apicurio.datasource.url": f"jdbc:h2:file:{root / 'data' / 'registry'};WRITE_DELAY=0",
        }
        heap = HEAPS["schema-registry"]
        command = [java, f"-Xms{heap}", f"-Xmx{heap}", *(f"-D{key}={value}" for key, value in properties.items())]
        service = self.by_name["schema-registry"]
        processes.spawn([*command, "-jar", str(app / "quarkus-run.jar")], service.log_file, service.pid_file, cwd=root)

    def _kafka_arguments(self, classpath: str) -> list[str]:
        """Write server.properties (formatting the storage on first start); the broker's main class and args."""
        s = self.settings.stack
        root = self.state / "kafka"
        data = root / "data"
        properties = root / "server.properties"
        root.mkdir(parents=True, exist_ok=True)
        template = (STACK_RECIPES / "kafka" / "server.properties").read_text()
        properties.write_text(
            template.format(port=s.kafka_port, controller_port=s.kafka_controller_port, data_dir=data)
        )
        if not (data / "meta.properties").exists():
            format_storage = ["kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()), "-c", str(properties)]
            processes.run([JAVA, "-cp", classpath, *format_storage], "kafka: format storage")
        return ["kafka.Kafka", str(properties)]

    def _pinot_arguments(self, name: str) -> list[str]:
        """Write the role's properties file; the main class and arguments that read it. Files, because only
        they reach the settings that bind each listener to 127.0.0.1 (the command-line flags of Pinot's
        Start* commands produce the legacy port keys, which bind every interface; docs/security.md)."""
        root = self.state / "pinot"
        root.mkdir(parents=True, exist_ok=True)
        config = root / f"{name}.conf"
        config.write_text("".join(f"{key}={value}\n" for key, value in self._pinot_config(name, root).items()))
        if name == "zookeeper":
            return ["org.apache.zookeeper.server.ZooKeeperServerMain", str(config)]
        command = {
            "pinot-controller": "StartController",
            "pinot-broker": "StartBroker",
            "pinot-server": "StartServer",
            "pinot-minion": "StartMinion",
        }
        return ["org.apache.pinot.tools.admin.PinotAdministrator", command[name], "-configFileName", str(config)]

    def _pinot_config(self, name: str, root: Path) -> dict[str, object]:
        s = self.settings.stack
        zk = f"127.0.0.1:{s.zookeeper_port}"
        cluster = {"pinot.zk.server": zk, "pinot.cluster.name": "PinotCluster"}
        if name == "zookeeper":
            return {
                "dataDir": root / "zookeeper",
                "clientPort": s.zookeeper_port,
                "clientPortAddress": "127.0.0.1",
                "tickTime": 2000,
                "admin.enableServer": "false",
                "4lw.commands.whitelist": "srvr,ruok",
            }
        if name == "pinot-controller":
            return {
                "controller.zk.str": zk,
                "controller.helix.cluster.name": "PinotCluster",
                "controller.host": "127.0.0.1",
                "controller.access.protocols": "http",
                "controller.access.protocols.http.host": "127.0.0.1",
                "controller.access.protocols.http.port": s.pinot_controller_port,
                "controller.vip.host": "127.0.0.1",
                "controller.vip.port": s.pinot_controller_port,
                "controller.data.dir": root / "controller",
                # Runs the minion's task on each table's own cron schedule (NIBBLE_PINOT_MINION_SCHEDULE, applied
                # with the table); the retention manager drops realtime segments older than the window hourly.
                "controller.task.scheduler.enabled": "true",
                "controller.retention.frequencyPeriod": "1h",
            }
        if name == "pinot-broker":
            return {
                **cluster,
                "pinot.broker.hostname": "127.0.0.1",
                "pinot.broker.client.access.protocols": "http",
                "pinot.broker.client.access.protocols.http.host": "127.0.0.1",
                "pinot.broker.client.access.protocols.http.port": s.pinot_broker_port,
            }
        if name == "pinot-minion":
            return {
                **cluster,
                "pinot.minion.host": "127.0.0.1",
                # Pinot 0.11 binds this port on every interface whatever the settings (docs/security.md).
                "pinot.minion.port": s.pinot_minion_port,
                "dataDir": root / "minion" / "data",  # emptied at each start: a task's scratch files
            }
        return {
            **cluster,
            "pinot.server.netty.host": "127.0.0.1",
            # Pinot 0.11 binds the query port on every interface whatever the settings (docs/security.md).
            "pinot.server.netty.port": s.pinot_server_port,
            "pinot.server.adminapi.access.protocols": "http",
            "pinot.server.adminapi.access.protocols.http.host": "127.0.0.1",
            "pinot.server.adminapi.access.protocols.http.port": s.pinot_server_admin_port,
            "pinot.server.grpc.enable": "false",  # streaming queries are unused, and gRPC cannot bind loopback
            "pinot.server.instance.dataDir": root / "server" / "data",
            "pinot.server.instance.segmentTarDir": root / "server" / "segments",
        }

    # --- PostgreSQL ----------------------------------------------------------------------------------

    def _pg_ctl(self, *arguments: str) -> None:
        # PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user.
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        data = self.state / "postgres" / "data"
        command = [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", *arguments]
        processes.run(command, f"postgres: pg_ctl {arguments[0]}")

    def _start_postgres(self) -> None:
        root = self.state / "postgres"
        data = root / "data"
        if not (data / "PG_VERSION").exists():
            root.mkdir(parents=True, exist_ok=True)
            as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            if as_postgres:
                shutil.chown(root, "postgres", "postgres")
                processes.make_traversable(root)
            initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            processes.run([*as_postgres, *initdb, "--locale=C.UTF-8"], "postgres: initdb")
            conf = data / "postgresql.conf"
            settings = (STACK_RECIPES / "postgres" / "postgresql.conf").read_text()
            local = f"port = {self.settings.stack.postgres_port}\nunix_socket_directories = '{root}'\n"
            conf.write_text(conf.read_text() + "\n" + settings + local)
            (root / "needs-bootstrap").touch()
        # After a kill -9 of the postmaster, its backends hold the shared memory for a moment: retry briefly.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._pg_ctl("start", "-l", str(self.by_name["postgres"].log_file))
                return
            except StackError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _admin_url(self) -> str:
        return self.settings.endpoints.database_url.rsplit("/", 1)[0] + "/postgres"

    def _bootstrap_postgres(self) -> None:
        """First start only: the `nibble` database and the superuser password docker-compose.yml also uses."""
        with postgres.connect(self._admin_url(), "nibble-stack") as conn:
            conn.execute("ALTER ROLE postgres PASSWORD 'nibble'")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'nibble'").fetchone() is None:
                conn.execute("CREATE DATABASE nibble")
        (self.state / "postgres" / "needs-bootstrap").unlink()

    def _set_login_passwords(self) -> None:
        """Give each login (the relay, the services, the tools) the password generated for this stack, creating
        the role if no migration has yet: replaces migration 0001's fixed word for the relay on older clusters.
        Sent as literals, never logged."""
        with postgres.connect(self._admin_url(), "nibble-stack") as conn:
            # A failing statement is logged with its text (e.g. "tuple concurrently updated" when two stack
            # starts race): this session's statements never reach the server log.
            conn.execute("SET log_min_error_statement = panic")
            conn.execute("SET log_statement = 'none'")
            for role in TOOL_LOGINS + SERVICE_LOGINS:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                verb = "ALTER" if exists else "CREATE"
                conn.execute(
                    sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                        sql.SQL(verb), sql.Identifier(role), sql.Literal(login_password(self.settings, role))
                    )
                )

    def _postgres_healthy(self) -> bool:
        try:
            with postgres.connect(self._admin_url(), "nibble-stack-probe") as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def _zookeeper_healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.settings.stack.zookeeper_port), timeout=2) as sock:
                # `srvr` is on ZooKeeper's default four-letter-word whitelist.
                sock.sendall(b"srvr")
                return b"Zookeeper version" in sock.recv(1024)
        except OSError:
            return False

    # --- fault injection: one service at a time (`nibble stack kill | restart`, the fault tests) ------------

    def kill(self, name: str) -> None:
        """`kill -9` a service (PostgreSQL: its postmaster); it stays down until `restart` or `up`."""
        service = self._service(name)
        pid = self.pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        self.report(f"{name}: kill -9 pid {pid}")
        if name == "postgres":
            os.kill(pid, signal.SIGKILL)  # its backends notice and exit; the group holds no one else of ours
        else:
            os.killpg(pid, signal.SIGKILL)
        # A JVM's main thread is a zombie before its other threads have closed its sockets: wait for both.
        deadline = time.monotonic() + 30
        while (processes.alive(pid) or _answering(service.ports)) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, name: str, hard: bool = False) -> float:
        """Stop a service (gracefully; `hard`: kill -9, PostgreSQL `pg_ctl restart -m immediate`), start it
        again and wait until it is healthy; a service that is down is just started. Returns the seconds it
        took."""
        service = self._service(name)
        started = time.monotonic()
        pid = self.pid(name)
        if name == "postgres" and pid is not None:
            mode = "immediate" if hard else "fast"
            self.report(f"postgres: pg_ctl restart -m {mode}")
            self._pg_ctl("restart", "-m", mode, "-l", str(service.log_file))
        else:
            if pid is not None and hard:
                self.kill(name)
            elif pid is not None:
                self.report(f"{name}: stopping pid {pid}")
                service.stop(pid)
            self._check_ports_free(service)
            self.report(f"{name}: starting on port {service.port}")
            service.start()
        self._wait_healthy(service)
        return time.monotonic() - started

    def _service(self, name: str) -> Service:
        if name not in self.by_name:
            raise StackError(f"unknown service {name!r}; one of {', '.join(self.by_name)}")
        return self.by_name[name]

    # --- stop and report -----------------------------------------------------------------------------

    def down(self) -> None:
        for service in reversed(self.services):
            pid = self.pid(service.name)
            if pid is None:
                continue
            self.report(f"{service.name}: stopping pid {pid}")
            service.stop(pid)
            if service.pid_file.parent == self.pids:
                service.pid_file.unlink(missing_ok=True)

    def status(self) -> list[dict[str, object]]:
        rows = []
        for service in self.services:
            pid = self.pid(service.name)
            healthy = pid is not None and service.healthy()
            rows.append(
                {
                    "service": service.name,
                    "pid": pid,
                    "port": service.port,
                    "address": service.address,
                    "healthy": healthy,
                }
            )
        return rows


def login_password(settings: Settings, role: str) -> str:
    """The local stack's password for the login `role`: generated on first use, kept with mode 0600 under
    `<state dir>/secrets/` (created with that mode, never readable by others even for a moment)."""
    path = password_file(settings.stack.state_dir, role)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def relay_password(settings: Settings) -> str:
    return login_password(settings, "nibble_relay")


def newest_java(minimum: int, service: str) -> str:
    """The java binary of the newest JDK/JRE found (JAVA_HOME, /usr/lib/jvm/*, PATH), if it is at least
    `minimum`; the stack's own Java 17 stays the one Kafka and Pinot run on."""
    homes = [os.environ["JAVA_HOME"]] if os.environ.get("JAVA_HOME") else []
    candidates = [Path(home) / "bin" / "java" for home in homes] + sorted(Path("/usr/lib/jvm").glob("*/bin/java"))
    on_path = shutil.which("java")
    candidates += [Path(on_path)] if on_path else []
    found: dict[Path, int] = {}
    for java in candidates:
        if java.exists() and java.resolve() not in found:
            found[java.resolve()] = _java_major(java)
    best = max(found, key=found.__getitem__, default=None)
    if best is None or found[best] < minimum:
        seen = ", ".join(f"{java} ({major})" for java, major in found.items()) or "none"
        raise StackError(
            f"{service}: needs Java {minimum} or newer, found {seen} in JAVA_HOME, /usr/lib/jvm and PATH; "
            f"install one (e.g. Temurin {minimum}+ under /usr/lib/jvm) or point JAVA_HOME at it"
        )
    return str(best)


def _java_major(java: Path) -> int:
    """The feature version `java -version` reports ('1.8.0' -> 8, '25.0.3' -> 25); 0 if it does not run."""
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(?:1\.)?(\d+)', result.stderr)
    return int(match.group(1)) if match else 0


def _answering(ports: dict[str, int]) -> list[str]:
    """The settings of the ports something accepts connections on."""
    taken = []
    for setting, port in ports.items():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(setting)
    return taken


def ensure_debian_packages(report: Report) -> None:
    missing = [package for package, marker in DEBIAN_PACKAGES.items() if not marker.exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages; run: sudo apt-get install -y {' '.join(missing)}")
    report(f"installing Debian packages: {' '.join(missing)}")
    processes.run(["apt-get", "update", "-q"], "apt-get update")
    processes.run(
        ["apt-get", "install", "-y", "-q", *missing],
        "apt-get install",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
