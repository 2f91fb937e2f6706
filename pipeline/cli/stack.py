"""`nibble stack up | down | status [--json] | logs [SERVICE] | env | restart SERVICE [--hard] | kill SERVICE`."""

from __future__ import annotations

import argparse
import json

from pipeline.config import Settings
from pipeline.devstack import processes, superset
from pipeline.devstack.stack import LocalStack
from pipeline.errors import NibbleError, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stack", help="run the local PostgreSQL, Kafka, Pinot, Redis and Superset without Docker"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("up", help="start every service (idempotent) and wait until all are healthy")
    actions.add_parser("down", help="stop the processes `up` started")
    status = actions.add_parser("status", help="service, pid, port and health")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    logs = actions.add_parser("logs", help="the tail of a service's log")
    logs.add_argument("service", nargs="?", help="one service (default: all)")
    logs.add_argument("-n", "--lines", type=int, default=40)
    actions.add_parser("env", help="print the NIBBLE_* settings that point at the local stack")
    restart = actions.add_parser("restart", help="stop one service, start it again and wait until it is healthy")
    restart.add_argument("service")
    restart.add_argument(
        "--hard", action="store_true", help="kill -9 instead of a clean stop (PostgreSQL: pg_ctl restart -m immediate)"
    )
    kill = actions.add_parser("kill", help="kill -9 one service (fault injection); `restart` or `up` brings it back")
    kill.add_argument("service")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stack = LocalStack(settings, report=lambda line: print(f"[stack] {line}", flush=True))
    if args.action == "up":
        stack.up()
        print("stack is up; `nibble stack status` shows it, `nibble stack down` stops it")
    elif args.action == "down":
        stack.down()
    elif args.action == "restart":
        print(f"{args.service} healthy again after {stack.restart(args.service, hard=args.hard):.1f} s")
    elif args.action == "kill":
        stack.kill(args.service)
    elif args.action == "status":
        rows = stack.status()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'service':<18}{'pid':>8}{'port':>7}  {'health':<10}address")
            for row in rows:
                health = "healthy" if row["healthy"] else ("unhealthy" if row["pid"] else "stopped")
                print(f"{row['service']:<18}{row['pid'] or '-':>8}{row['port']:>7}  {health:<10}{row['address']}")
            if stack.pid("superset") is not None:
                login = superset.login(settings)
                print(f"Superset login: {login.user} / {login.password} (also in `nibble stack env`)")
        return 0 if all(row["healthy"] for row in rows) else 1
    elif args.action == "logs":
        names = [args.service] if args.service else list(stack.by_name)
        for name in names:
            if name not in stack.by_name:
                raise UsageError(f"unknown service {name!r}; one of {', '.join(stack.by_name)}")
            log_file = stack.by_name[name].log_file
            print(f"==> {log_file} <==\n{processes.tail(log_file, args.lines)}")
    elif args.action == "env":
        e = settings.endpoints
        try:
            login = superset.login(settings)
            print(f"# Superset: {login.url} (login {login.user} / {login.password})")
        except NibbleError as exc:
            print(f"# Superset: {exc}")
        print(f"export NIBBLE_DATABASE_URL={e.database_url}")
        print(f"export NIBBLE_KAFKA_BOOTSTRAP_SERVERS={e.kafka_bootstrap_servers}")
        print(f"export NIBBLE_PINOT_CONTROLLER_URL={e.pinot_controller_url}")
        print(f"export NIBBLE_PINOT_BROKER_URL={e.pinot_broker_url}")
        print(f"export NIBBLE_SUPERSET_URL={e.superset_url}")
        print(f"export NIBBLE_SCHEMA_REGISTRY_URL={e.schema_registry_url}")
    return 0
