"""`nibble stack up | down | status | logs | env`: the real services on this machine, without Docker.

PostgreSQL 15 + PostGIS comes from Debian packages, Kafka (KRaft) and Pinot from Maven Central through the
poms in stack/maven (jars stay in ~/.m2, so a second `up` downloads nothing). Every process we start has a
pid file in the state dir; `down` stops exactly those.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from confluent_kafka.admin import AdminClient

from pipeline import PROJECT_ROOT
from pipeline.config import Settings

STACK_DIR = PROJECT_ROOT / "stack"
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
START_TIMEOUT_S = 180


class StackError(Exception):
    """A service could not be set up or started; the message says which and why."""


@dataclass(frozen=True)
class Service:
    name: str
    address: str
    healthy: Callable[[], bool]
    ports: dict[str, int]  # setting name -> port it listens on; the first is the service's own

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))


class LocalStack:
    """The six local services, their files under the state dir, and how to start, probe and stop them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        s = settings
        self.services = [
            Service("postgres", s.postgres_url, self._postgres_healthy, {"postgres_port": s.postgres_port}),
            Service(
                "kafka",
                s.kafka_bootstrap,
                self._kafka_healthy,
                {"kafka_port": s.kafka_port, "kafka_controller_port": s.kafka_controller_port},
            ),
            Service(
                "zookeeper",
                f"127.0.0.1:{s.zookeeper_port}",
                self._zookeeper_healthy,
                {"zookeeper_port": s.zookeeper_port},
            ),
            Service(
                "pinot-controller",
                s.pinot_controller,
                lambda: _http_ok(f"{s.pinot_controller}/health"),
                {"pinot_controller_port": s.pinot_controller_port},
            ),
            Service(
                "pinot-broker",
                s.pinot_broker,
                lambda: _http_ok(f"{s.pinot_broker}/health"),
                {"pinot_broker_port": s.pinot_broker_port},
            ),
            Service(
                "pinot-server",
                f"127.0.0.1:{s.pinot_server_port}",
                lambda: _http_ok(f"http://127.0.0.1:{s.pinot_server_admin_port}/health"),
                {
                    "pinot_server_port": s.pinot_server_port,
                    "pinot_server_admin_port": s.pinot_server_admin_port,
                    "pinot_server_grpc_port": s.pinot_server_grpc_port,
                },
            ),
        ]
        self.by_name = {service.name: service for service in self.services}

    # --- process bookkeeping -------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        """The live pid of a service we started, or None."""
        if name == "postgres":
            pid_file = self.state / "postgres" / "data" / "postmaster.pid"
        else:
            pid_file = self.pids / f"{name}.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def log_file(self, name: str) -> Path:
        if name == "postgres":  # written by the server itself, as the postgres user
            return self.state / "postgres" / "server.log"
        return self.logs / f"{name}.log"

    def _spawn_java(self, name: str, classpath: str, args: list[str], heap: str) -> None:
        log4j = STACK_DIR / ("kafka" if name == "kafka" else "pinot") / "log4j2.properties"
        command = [
            JAVA,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            *JAVA_OPENS,
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
            *args,
        ]
        with self.log_file(name).open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state,
                start_new_session=True,
            )
        (self.pids / f"{name}.pid").write_text(f"{process.pid}\n")

    # --- start ---------------------------------------------------------------------------------------

    def up(self) -> None:
        for directory in (self.state, self.logs, self.pids):
            directory.mkdir(parents=True, exist_ok=True)
        ensure_debian_packages()
        classpaths = {runtime: self._classpath(runtime) for runtime in ("kafka", "pinot")}
        starters: dict[str, Callable[[], None]] = {
            "postgres": self._start_postgres,
            "kafka": lambda: self._start_kafka(classpaths["kafka"]),
            "zookeeper": lambda: self._start_pinot_role("zookeeper", classpaths["pinot"]),
            "pinot-controller": lambda: self._start_pinot_role("pinot-controller", classpaths["pinot"]),
            "pinot-broker": lambda: self._start_pinot_role("pinot-broker", classpaths["pinot"]),
            "pinot-server": lambda: self._start_pinot_role("pinot-server", classpaths["pinot"]),
        }
        # Each phase needs the one before it (Pinot's roles register in ZooKeeper through the controller).
        phases = [["postgres", "kafka", "zookeeper"], ["pinot-controller"], ["pinot-broker", "pinot-server"]]
        for phase in phases:
            started = []
            for name in phase:
                if self.pid(name) is not None:
                    if self.by_name[name].healthy():
                        _progress(f"{name}: already running (pid {self.pid(name)})")
                        continue
                    _progress(f"{name}: running (pid {self.pid(name)}) but not healthy yet; waiting")
                else:
                    self._check_port_free(self.by_name[name])
                    _progress(f"{name}: starting on port {self.by_name[name].port}")
                    starters[name]()
                started.append(name)
            for name in started:
                self._wait_healthy(name)
        if (self.state / "postgres" / "needs-bootstrap").exists():
            self._bootstrap_postgres()

    def _check_port_free(self, service: Service) -> None:
        for setting, port in service.ports.items():
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    raise StackError(
                        f"{service.name}: port {port} is already taken by a process this stack did not "
                        f"start; stop it or choose another port with NIBBLE_{setting.upper()}"
                    )

    def _wait_healthy(self, name: str) -> None:
        service = self.by_name[name]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.healthy():
                _progress(f"{name}: healthy at {service.address}")
                return
            if self.pid(name) is None:
                break
            time.sleep(1)
        tail = _tail(self.log_file(name), 40)
        state = "exited" if self.pid(name) is None else f"not healthy after {START_TIMEOUT_S} s"
        raise StackError(f"{name} {state}; last lines of {self.log_file(name)}:\n{tail}")

    def _classpath(self, runtime: str) -> str:
        """Resolve a runtime's jars from Maven Central once; later calls read the cached classpath."""
        pom = STACK_DIR / "maven" / runtime / "pom.xml"
        cached = self.state / f"{runtime}.classpath"
        if cached.exists() and cached.stat().st_mtime >= pom.stat().st_mtime:
            classpath = cached.read_text().strip()
            if all(Path(jar).exists() for jar in classpath.split(":")):
                return classpath
        _progress(f"{runtime}: resolving jars from Maven Central (first run downloads them into ~/.m2)")
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
                        _progress(f"{runtime}: {downloaded} jars downloaded so far")
        if maven.returncode != 0:
            raise StackError(f"{runtime}: Maven could not resolve {pom}:\n{''.join(output[-40:])}")
        return cached.read_text().strip()

    def _start_postgres(self) -> None:
        root = self.state / "postgres"
        data = root / "data"
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if not (data / "PG_VERSION").exists():
            root.mkdir(parents=True, exist_ok=True)
            if as_postgres:
                # PostgreSQL refuses to run as root: run it as Debian's `postgres` user.
                shutil.chown(root, "postgres", "postgres")
                _make_traversable(root)
            _run(
                [
                    *as_postgres,
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                "postgres: initdb",
            )
            conf = data / "postgresql.conf"
            settings = (STACK_DIR / "postgres" / "postgresql.conf").read_text()
            local = f"port = {self.settings.postgres_port}\nunix_socket_directories = '{root}'\n"
            conf.write_text(conf.read_text() + "\n" + settings + local)
            (root / "needs-bootstrap").touch()
        _run(
            [
                *as_postgres,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.log_file("postgres")),
                "-w",
                "-t",
                "60",
                "start",
            ],
            "postgres: pg_ctl start",
        )

    def _bootstrap_postgres(self) -> None:
        """First start only: the `nibble` database and the superuser password docker-compose.yml also uses."""
        admin_url = self.settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("ALTER ROLE postgres PASSWORD 'nibble'")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'nibble'").fetchone() is None:
                conn.execute("CREATE DATABASE nibble")
        (self.state / "postgres" / "needs-bootstrap").unlink()

    def _start_kafka(self, classpath: str) -> None:
        root = self.state / "kafka"
        data = root / "data"
        properties = root / "server.properties"
        root.mkdir(parents=True, exist_ok=True)
        template = (STACK_DIR / "kafka" / "server.properties").read_text()
        properties.write_text(
            template.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data_dir=data,
            )
        )
        if not (data / "meta.properties").exists():
            _run(
                [
                    JAVA,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    str(uuid.uuid4()),
                    "-c",
                    str(properties),
                ],
                "kafka: format storage",
            )
        self._spawn_java("kafka", classpath, ["kafka.Kafka", str(properties)], heap="1g")

    def _start_pinot_role(self, name: str, classpath: str) -> None:
        s = self.settings
        root = self.state / "pinot"
        zk = f"127.0.0.1:{s.zookeeper_port}"
        admin = ["org.apache.pinot.tools.admin.PinotAdministrator"]
        arguments = {
            "zookeeper": [
                "StartZookeeper",
                "-zkPort",
                str(s.zookeeper_port),
                "-dataDir",
                str(root / "zookeeper"),
            ],
            "pinot-controller": [
                "StartController",
                "-zkAddress",
                zk,
                "-clusterName",
                "PinotCluster",
                "-controllerHost",
                "127.0.0.1",
                "-controllerPort",
                str(s.pinot_controller_port),
                "-dataDir",
                str(root / "controller"),
            ],
            "pinot-broker": [
                "StartBroker",
                "-zkAddress",
                zk,
                "-clusterName",
                "PinotCluster",
                "-brokerHost",
                "127.0.0.1",
                "-brokerPort",
                str(s.pinot_broker_port),
            ],
            "pinot-server": [
                "StartServer",
                "-zkAddress",
                zk,
                "-clusterName",
                "PinotCluster",
                "-serverHost",
                "127.0.0.1",
                "-serverPort",
                str(s.pinot_server_port),
                "-serverAdminPort",
                str(s.pinot_server_admin_port),
                "-serverGrpcPort",
                str(s.pinot_server_grpc_port),
                "-dataDir",
                str(root / "server" / "data"),
                "-segmentDir",
                str(root / "server" / "segments"),
            ],
        }[name]
        heap = {"zookeeper": "256m", "pinot-controller": "1g", "pinot-broker": "1g", "pinot-server": "4g"}[name]
        self._spawn_java(name, classpath, admin + arguments, heap=heap)

    # --- probes --------------------------------------------------------------------------------------

    def _postgres_healthy(self) -> bool:
        try:
            with psycopg.connect(self.settings.postgres_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    def _kafka_healthy(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap, "logger": _QUIET})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _zookeeper_healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.settings.zookeeper_port), timeout=2) as sock:
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
            _progress(f"{service.name}: stopping pid {pid}")
            if service.name == "postgres":
                as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
                _run(
                    [
                        *as_postgres,
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(self.state / "postgres" / "data"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ],
                    "postgres: pg_ctl stop",
                )
            else:
                _terminate(pid)
                (self.pids / f"{service.name}.pid").unlink(missing_ok=True)

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "service": s.name,
                "pid": self.pid(s.name),
                "port": s.port,
                "address": s.address,
                "healthy": self.pid(s.name) is not None and s.healthy(),
            }
            for s in self.services
        ]


def up(settings: Settings) -> None:
    LocalStack(settings).up()


def ensure_debian_packages() -> None:
    missing = [package for package, marker in DEBIAN_PACKAGES.items() if not marker.exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"missing Debian packages; run: sudo apt-get install -y {' '.join(missing)}")
    _progress(f"installing Debian packages: {' '.join(missing)}")
    _run(["apt-get", "update", "-q"], "apt-get update")
    _run(
        ["apt-get", "install", "-y", "-q", *missing],
        "apt-get install",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


# --- small helpers --------------------------------------------------------------------------------------

_QUIET = logging.getLogger("nibble.stack.kafka-probe")
_QUIET.setLevel(100)  # librdkafka's connection-refused chatter while the broker boots is expected


def _progress(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _terminate(pid: int, grace_s: float = 30) -> None:
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)


def _make_traversable(path: Path) -> None:
    """Let the postgres user reach a data dir inside a checkout that root owns."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o001)


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# --- CLI ------------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("stack", help="run the local PostgreSQL, Kafka and Pinot without Docker")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("up", help="start every service (idempotent) and wait until all are healthy")
    actions.add_parser("down", help="stop the processes `up` started")
    status = actions.add_parser("status", help="service, pid, port and health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    logs = actions.add_parser("logs", help="the tail of a service's log")
    logs.add_argument("service", nargs="?", help="one service (default: all)")
    logs.add_argument("-n", "--lines", type=int, default=40)
    actions.add_parser("env", help="print the NIBBLE_* settings that point at the local stack")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stack = LocalStack(settings)
    if args.action == "up":
        try:
            stack.up()
        except StackError as exc:
            print(f"nibble stack up: {exc}", file=sys.stderr)
            return 1
        print("stack is up; `nibble stack status` shows it, `nibble stack down` stops it")
        return 0
    if args.action == "down":
        stack.down()
        return 0
    if args.action == "status":
        rows = stack.status()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'service':<18}{'pid':>8}{'port':>7}  {'health':<10}address")
            for row in rows:
                health = "healthy" if row["healthy"] else ("unhealthy" if row["pid"] else "stopped")
                pid = row["pid"] or "-"
                print(f"{row['service']:<18}{pid:>8}{row['port']:>7}  {health:<10}{row['address']}")
        return 0 if all(row["healthy"] for row in rows) else 1
    if args.action == "logs":
        names = [args.service] if args.service else [s.name for s in stack.services]
        for name in names:
            if name not in stack.by_name:
                print(f"unknown service {name!r}; one of {', '.join(stack.by_name)}", file=sys.stderr)
                return 2
            print(f"==> {stack.log_file(name)} <==\n{_tail(stack.log_file(name), args.lines)}")
        return 0
    if args.action == "env":
        print(f"export NIBBLE_DATABASE_URL={settings.postgres_url}")
        print(f"export NIBBLE_KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap}")
        print(f"export NIBBLE_PINOT_CONTROLLER_URL={settings.pinot_controller}")
        print(f"export NIBBLE_PINOT_BROKER_URL={settings.pinot_broker}")
        return 0
    raise AssertionError(args.action)
