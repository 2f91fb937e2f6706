"""The local stack's PostgreSQL: a cluster of its own under the state dir, run with Debian's binaries (as the
`postgres` user when we are root), its first start's bootstrap, the logins' generated passwords, its probe."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import psycopg
from psycopg import sql

from connectors import postgres
from pipeline.config import SERVICE_LOGINS, TOOL_LOGINS, Settings, password_file
from pipeline.devstack import configs, processes
from pipeline.devstack.installers import PG_BIN
from pipeline.devstack.processes import StackError


class Cluster:
    def __init__(self, settings: Settings, state: Path) -> None:
        self.settings = settings
        self.root = state / "postgres"
        self.data = self.root / "data"

    def pg_ctl(self, *arguments: str) -> None:
        # PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user.
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command = [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *arguments]
        processes.run(command, f"postgres: pg_ctl {arguments[0]}")

    def start(self, log_file: Path) -> None:
        """initdb on first start (the bootstrap follows once the server is healthy), then pg_ctl start."""
        if not (self.data / "PG_VERSION").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            if as_postgres:
                shutil.chown(self.root, "postgres", "postgres")
                processes.make_traversable(self.root)
            initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            processes.run([*as_postgres, *initdb, "--locale=C.UTF-8"], "postgres: initdb")
            conf = self.data / "postgresql.conf"
            conf.write_text(conf.read_text() + "\n" + configs.postgres_conf(self.settings.stack, self.root))
            self._bootstrap_marker.touch()
        # After a kill -9 of the postmaster, its backends hold the shared memory for a moment: retry briefly.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.pg_ctl("start", "-l", str(log_file))
                return
            except StackError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    @property
    def _bootstrap_marker(self) -> Path:
        return self.root / "needs-bootstrap"

    def _admin_url(self) -> str:
        return self.settings.endpoints.database_url.rsplit("/", 1)[0] + "/postgres"

    def bootstrap(self) -> None:
        """After the first start only: the `nibble` database and the superuser password docker-compose.yml also
        uses."""
        if not self._bootstrap_marker.exists():
            return
        with postgres.connect(self._admin_url(), "nibble-stack") as conn:
            conn.execute("ALTER ROLE postgres PASSWORD 'nibble'")
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'nibble'").fetchone() is None:
                conn.execute("CREATE DATABASE nibble")
        self._bootstrap_marker.unlink()

    def set_login_passwords(self) -> None:
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

    def healthy(self) -> bool:
        try:
            with postgres.connect(self._admin_url(), "nibble-stack-probe") as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False


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
