"""`nibble demo [--rate R] [--duration S]`."""

from __future__ import annotations

import argparse

from pipeline.config import Settings
from pipeline.devstack.demo import run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="run the pipeline end to end with a live summary from Pinot")
    parser.add_argument("--rate", type=float, default=1000, help="generated events per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of live traffic")
    parser.add_argument("--history", default="7d", help="past activity written first, once (default 7d)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_demo(settings, args.rate, args.duration, args.history)
