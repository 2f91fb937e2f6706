"""The local stack: the real services on this machine, without Docker (`nibble stack up | down | status`).

PostgreSQL 15 + PostGIS and Redis come from Debian packages, Kafka (KRaft), Pinot and the schema registry
(Apicurio) from Maven Central through the poms in stack/maven, Apache Superset from PyPI into a virtualenv of
its own. Every service is one row of the service table (services.py): its ports, pid file, log, how to start,
probe and stop it; installers.py fetches what they need, configs.py renders their settings, faults.py kills
and restarts one at a time. `down` stops exactly the pids the pid files name.
"""

from __future__ import annotations

import time

from pipeline.config import Settings
from pipeline.devstack import faults, processes
from pipeline.devstack.installers import Report, ensure_debian_packages
from pipeline.devstack.postgres_cluster import Cluster
from pipeline.devstack.processes import StackError
from pipeline.devstack.services import Service, service_table

START_TIMEOUT_S = 600  # a Pinot server reloading a few million rows is healthy only after minutes


class LocalStack:
    """The local services, their files under the state dir, and how to start, probe and stop them."""

    def __init__(self, settings: Settings, report: Report = print) -> None:
        self.settings = settings
        self.report = report
        self.state = settings.stack.state_dir.resolve()
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        self.postgres = Cluster(settings, self.state)
        self.services = service_table(settings, self.state, self.postgres, report)
        self.by_name = {service.name: service for service in self.services}

    def pid(self, name: str) -> int | None:
        """The live pid of a service we started, or None."""
        return processes.read_pid(self.by_name[name].pid_file)

    def service(self, name: str) -> Service:
        if name not in self.by_name:
            raise StackError(f"unknown service {name!r}; one of {', '.join(self.by_name)}")
        return self.by_name[name]

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
                    self.check_ports_free(service)
                    self.report(f"{service.name}: starting on port {service.port}")
                    service.start()
                started.append(service)
            for service in started:
                self.wait_healthy(service)
        self.postgres.bootstrap()
        self.postgres.set_login_passwords()

    def check_ports_free(self, service: Service) -> None:
        taken = service.answering()
        if taken:
            setting = taken[0]
            raise StackError(
                f"{service.name}: port {service.ports[setting]} is already taken by a process this stack did not "
                f"start; stop it or choose another port with NIBBLE_{setting.upper()}"
            )

    def wait_healthy(self, service: Service) -> None:
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

    # --- fault injection: one service at a time (faults.py) ------------------------------------------

    def kill(self, name: str) -> None:
        faults.kill(self, name)

    def restart(self, name: str, hard: bool = False) -> float:
        return faults.restart(self, name, hard)

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
