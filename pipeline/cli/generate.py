"""`nibble generate --rate R --duration S [--seed N]` and `nibble generate --history 7d`."""

from __future__ import annotations

import argparse
from datetime import timedelta

from pipeline.config import Settings
from pipeline.devstack.generator import Generator, parse_span


def _span(text: str) -> timedelta:
    try:
        return parse_span(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write realistic Nibble activity through the service schemas")
    parser.add_argument("--rate", type=float, default=500, help="about this many outbox events per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds to run")
    parser.add_argument("--seed", type=int, help="same seed, same activity (ids included: use a fresh database)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1,
        help="simulated minutes per real minute (1: real time; 60: a 35-minute delivery takes 35 s)",
    )
    parser.add_argument(
        "--history",
        type=_span,
        metavar="SPAN",
        help="instead of live traffic, write the past SPAN (e.g. 7d, 12h) as fast as the database goes",
    )
    parser.add_argument(
        "--peak-orders-per-minute",
        type=float,
        default=20,
        help="with --history: orders per minute at a weekday's dinner peak (default 20)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    generator = Generator(settings.endpoints.database_url, seed=args.seed, time_scale=args.time_scale)
    if args.history is not None:
        placed = generator.run_history(args.history, args.peak_orders_per_minute)
        print(f"[generate] history done: {placed} orders placed over the last {args.history}")
        return 0
    placed = generator.run_live(args.rate, args.duration)
    print(f"[generate] done: {placed} orders placed in {args.duration:.0f} s")
    return 0
