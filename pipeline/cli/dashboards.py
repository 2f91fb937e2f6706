"""`nibble dashboards apply | export NAME`: the Superset dashboards kept as code in dashboards/."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from pipeline.analytics import dashboards
from pipeline.config import Settings
from pipeline.resources import DASHBOARDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboards", help="apply or export the Superset dashboards kept in dashboards/")
    actions = parser.add_subparsers(dest="action", required=True)
    apply_parser = actions.add_parser(
        "apply", help="import every dashboard, chart and dataset (idempotent); remove managed ones deleted here"
    )
    export_parser = actions.add_parser("export", help="write a dashboard edited in Superset back into the folder")
    export_parser.add_argument("name", help="the dashboard's slug, e.g. orders_live")
    for action in (apply_parser, export_parser):
        action.add_argument("--dir", type=Path, default=DASHBOARDS, help="the assets folder (default: dashboards/)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    folder = args.dir.resolve()
    if args.action == "apply":
        dashboards.load_bundle(folder)  # a broken file fails here, before Superset is asked anything
    login = _login(settings)
    superset = dashboards.connect(login)
    if args.action == "apply":
        changes = dashboards.apply(settings, superset, folder)
        for change in changes:
            print(change)
        print(f"{len(changes)} change(s); dashboards at {login.url}/dashboard/list/")
    else:
        for path in dashboards.export(superset, args.name, folder):
            print(f"wrote {path}")
    return 0


def _login(settings: Settings) -> dashboards.SupersetLogin:
    """NIBBLE_SUPERSET_ADMIN_PASSWORD, else the local stack's password where the development stack is installed
    (the relay's image ships without it)."""
    if importlib.util.find_spec("pipeline.devstack") is None:
        return dashboards.superset_login(settings)
    from pipeline.devstack import superset

    return superset.login(settings)
