"""`nibble generate --rate R --duration S [--seed N]`."""

from __future__ import annotations

import argparse

from pipeline.config import Settings
from pipeline.devstack.generator import Generator


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write realistic Nibble activity through the service schemas")
    parser.add_argument("--rate", type=float, default=500, help="about this many outbox events per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds to run")
    parser.add_argument("--seed", type=int, help="same seed, same activity (ids included: use a fresh database)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=60,
        help="simulated minutes per real minute (60: a 32-minute delivery takes 32 s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    generator = Generator(settings.endpoints.database_url, seed=args.seed, time_scale=args.time_scale)
    placed = generator.run_live(args.rate, args.duration)
    print(f"[generate] done: {placed} orders placed in {args.duration:.0f} s")
    return 0
