"""Redis and Apache Superset as services of the local stack: their rows of the service table.

Superset runs from a virtualenv of its own under the state dir (it pins SQLAlchemy below 2 and weighs about
800 MB), installed from stack/superset/requirements.lock with `--no-deps`, so every install is the same. A
stamp of the lock file's hash makes a second `up` skip pip and the metadata setup. The secret key and the
admin password are generated on first start and kept with mode 0600 beside the SQLite metadata database.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors import http
from pipeline.analytics.dashboards import ADMIN_USER, SupersetLogin, superset_login
from pipeline.config import Settings
from pipeline.devstack import processes
from pipeline.devstack.processes import StackError
from pipeline.resources import STACK_RECIPES

LOCK_FILE = STACK_RECIPES / "superset" / "requirements.lock"
CONFIG_FILE = STACK_RECIPES / "superset" / "superset_config.py"
REDIS_CONFIG = STACK_RECIPES / "redis" / "redis.conf"
REDIS_SERVER = "/usr/bin/redis-server"
GUNICORN_WORKERS = 2  # gthread workers; Pinot does the heavy lifting, Superset mostly waits on it

Report = Callable[[str], None]


def superset_home(settings: Settings) -> Path:
    """The local stack's Superset files: virtualenv, metadata database, secret key, admin password."""
    return settings.stack.state_dir.resolve() / "superset"


def admin_password_file(settings: Settings) -> Path:
    """Where the local stack keeps the admin password it generated (mode 0600)."""
    return superset_home(settings) / "admin_password"


def login(settings: Settings) -> SupersetLogin:
    """The admin login: NIBBLE_SUPERSET_ADMIN_PASSWORD if set, else the password this stack generated."""
    return superset_login(settings, admin_password_file(settings))


# --- Redis -----------------------------------------------------------------------------------------------


def redis_healthy(port: int) -> bool:
    """A PING answered with PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(settings: Settings, log_file: Path, pid_file: Path) -> None:
    data = settings.stack.state_dir.resolve() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    command = [REDIS_SERVER, str(REDIS_CONFIG), "--port", str(settings.stack.redis_port), "--dir", str(data)]
    with _first_starter(pid_file) as first:
        if first:
            processes.spawn(command, log_file, pid_file, cwd=data)


@contextmanager
def _first_starter(pid_file: Path) -> Iterator[bool]:
    """Whether this caller starts the service: every test session runs `up`, and of several at once the first
    starts (and installs) it while the others wait for the lock and find it started."""
    with pid_file.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield processes.read_pid(pid_file) is None


# --- Superset --------------------------------------------------------------------------------------------


def superset_environment(settings: Settings) -> dict[str, str]:
    """What superset_config.py reads, for the `superset` CLI and gunicorn alike."""
    venv = superset_home(settings) / "venv"
    return {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "SUPERSET_CONFIG_PATH": str(CONFIG_FILE),
        "PYTHONPATH": str(CONFIG_FILE.parent),  # nibble_superset_cache.py, which the config names
        "FLASK_APP": "superset",
        "NIBBLE_SUPERSET_HOME": str(superset_home(settings)),
        "NIBBLE_SUPERSET_REDIS_URL": f"redis://127.0.0.1:{settings.stack.redis_port}/0",
    }


def _lock_hash() -> str:
    digest = hashlib.sha256(LOCK_FILE.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()


def ensure_virtualenv(settings: Settings, report: Report) -> None:
    """Install Superset's virtualenv from the lock file unless the stamp says this lock is installed already."""
    home = superset_home(settings)
    venv = home / "venv"
    stamp = venv / "nibble-lock.sha256"
    wanted = _lock_hash()
    if stamp.exists() and stamp.read_text().strip() == wanted and (venv / "bin" / "gunicorn").exists():
        return
    report(f"superset: installing its virtualenv from {LOCK_FILE.name} into {venv} (about 800 MB, once)")
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    processes.run([sys.executable, "-m", "venv", "--clear", str(venv)], "superset: python -m venv")
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    processes.run([*pip, "--no-deps", "-r", str(LOCK_FILE)], "superset: pip install -r requirements.lock")
    stamp.write_text(wanted + "\n")
    (home / "metadata.sha256").unlink(missing_ok=True)  # a new Superset may bring new migrations
    report(f"superset: virtualenv installed in {time.monotonic() - started:.0f} s")


def _secret(path: Path, length: int) -> str:
    """A secret generated on first use, readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(length) + "\n")
    return path.read_text().strip()


def ensure_metadata(settings: Settings, report: Report) -> None:
    """Migrate Superset's SQLite metadata, create the admin and the default roles; once per installed lock."""
    home = superset_home(settings)
    stamp = home / "metadata.sha256"
    _secret(home / "secret_key", 48)
    password = _secret(admin_password_file(settings), 18)
    wanted = _lock_hash()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    report("superset: setting up its metadata database (migrations, admin user, roles)")
    env = superset_environment(settings)
    superset = str(home / "venv" / "bin" / "superset")
    processes.run([superset, "db", "upgrade"], "superset db upgrade", env=env)
    admin = ["--username", ADMIN_USER, "--firstname", "Nibble", "--lastname", "Admin"]
    admin += ["--email", "admin@nibble.invalid", "--password", password]
    processes.run([superset, "fab", "create-admin", *admin], "superset fab create-admin", env=env)
    processes.run([superset, "init"], "superset init", env=env)
    stamp.write_text(wanted + "\n")


def start_superset(settings: Settings, log_file: Path, pid_file: Path, report: Report) -> None:
    if not redis_healthy(settings.stack.redis_port):
        raise StackError(
            f"superset: Redis does not answer on port {settings.stack.redis_port} (its caches live there); "
            "see `nibble stack logs redis`"
        )
    home = superset_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    with _first_starter(pid_file) as first:
        if not first:
            return
        ensure_virtualenv(settings, report)
        ensure_metadata(settings, report)
        command = [
            str(home / "venv" / "bin" / "gunicorn"),
            *("--bind", f"127.0.0.1:{settings.stack.superset_port}"),
            *("--workers", str(GUNICORN_WORKERS), "--worker-class", "gthread", "--threads", "4"),
            *("--timeout", "120", "--limit-request-line", "0", "--limit-request-field_size", "0"),
            "--no-control-socket",
            "superset.app:create_app()",
        ]
        processes.spawn(command, log_file, pid_file, cwd=home, env=superset_environment(settings))


def superset_healthy(settings: Settings) -> bool:
    return http.ok(f"{settings.endpoints.superset_url}/health")
