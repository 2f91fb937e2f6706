"""The local stack: the real services on this machine, without Docker (`nibble stack up | down | status`).

PostgreSQL 15 + PostGIS comes from Debian packages, Kafka (KRaft) and Pinot from Maven Central through the
poms in stack/maven (jars stay in ~/.m2, so a second `up` downloads nothing). Every service is one row of
the service table: its ports, pid file, log, how to start, probe and stop it. `down` stops exactly the pids
the pid files name.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from connectors import http, kafka, postgres
from pipeline.config import Settings
from pipeline.devstack import processes
from pipeline.devstack.processes import StackError
from pipeline.errors import redact
from pipeline.resources import STACK_RECIPES

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEBIAN_PACKAGES = {
    # package: a file it installs, to tell whether it is there
    "postgresql-15": PG_BIN / "postgres",
    "postgresql-15-postgis-3": Path("/usr/share/postgresql/15/extension/postgis.control"),
    "openjdk-17-jre-headless": Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"),
    "maven": Path("/usr/bin/mvn"),
}
JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
# Pinot 0.11 reflects into JDK internals; these are the opens its own test runs pass on Java 17.
JAVA_OPENS = [
    f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
    for pkg in ("java.nio", "sun.nio.ch", "java.lang", "java.util", "java.lang.reflect", "jdk.internal.misc")
] + ["-Dio.netty.tryReflectionSetAccessible=true"]
HEAPS = {"kafka": "1g", "zookeeper": "256m", "pinot-controller": "1g", "pinot-broker": "1g", "pinot-server": "4g"}
START_TIMEOUT_S = 180

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

    def _check_ports_free(self, service: Service) -> None:
        for setting, port in service.ports.items():
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    raise StackError(
                        f"{service.name}: port {port} is already taken by a process this stack did not "
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
        arguments = self._kafka_arguments(classpath) if name == "kafka" else self._pinot_arguments(name)
        log4j = STACK_RECIPES / runtime / "log4j2.properties"
        heap = HEAPS[name]
        command = [JAVA, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", *JAVA_OPENS]
        command += [f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath, *arguments]
        service = self.by_name[name]
        processes.spawn(command, service.log_file, service.pid_file, cwd=self.state)

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
        s = self.settings.stack
        root = self.state / "pinot"
        cluster = ["-zkAddress", f"127.0.0.1:{s.zookeeper_port}", "-clusterName", "PinotCluster"]
        command = {
            "zookeeper": ["StartZookeeper", "-zkPort", str(s.zookeeper_port), "-dataDir", str(root / "zookeeper")],
            "pinot-controller": [
                "StartController",
                *cluster,
                *("-controllerHost", "127.0.0.1", "-controllerPort", str(s.pinot_controller_port)),
                *("-dataDir", str(root / "controller")),
            ],
            "pinot-broker": [
                "StartBroker",
                *cluster,
                *("-brokerHost", "127.0.0.1", "-brokerPort", str(s.pinot_broker_port)),
            ],
            "pinot-server": [
                "StartServer",
                *cluster,
                *("-serverHost", "127.0.0.1", "-serverPort", str(s.pinot_server_port)),
                *("-serverAdminPort", str(s.pinot_server_admin_port)),
                *("-serverGrpcPort", str(s.pinot_server_grpc_port)),
                *("-dataDir", str(root / "server" / "data"), "-segmentDir", str(root / "server" / "segments")),
            ],
        }[name]
        return ["org.apache.pinot.tools.admin.PinotAdministrator", *command]

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
        self._pg_ctl("start", "-l", str(self.by_name["postgres"].log_file))

    def _admin_url(self) -> str:
        return self.settings.endpoints.database_url.rsplit("/", 1)[0] + "/postgres"

    def _bootstrap_postgres(self) -> None:
        """First start only: the `nibble` database and the superuser password docker-compose.yml also uses."""
        with postgres.connect(self._admin_url(), "nibble-stack") as conn:
            conn.execute("ALTER ROLE postgres PASSWORD 'nibble'")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'nibble'").fetchone() is None:
                conn.execute("CREATE DATABASE nibble")
        (self.state / "postgres" / "needs-bootstrap").unlink()

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
