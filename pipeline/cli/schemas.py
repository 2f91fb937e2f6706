"""`nibble schemas apply`: every stream's Avro versions of avro_schemas/ in the schema registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from connectors.registry import Registry
from pipeline.config import Settings
from pipeline.contract.codec import Codec
from pipeline.contract.subjects import COMPATIBILITY, apply_subjects
from pipeline.resources import AVRO_SCHEMAS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schemas", help="register the Avro schemas in the schema registry")
    actions = parser.add_subparsers(dest="action", required=True)
    apply_parser = actions.add_parser(
        "apply", help=f"register every stream's versions under <topic>-value, {COMPATIBILITY} (idempotent)"
    )
    apply_parser.add_argument(
        "--dir", type=Path, default=AVRO_SCHEMAS, help="the schemas folder (default: avro_schemas/)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    codec = Codec(settings.endpoints.topic_prefix, args.dir.resolve())
    changes = apply_subjects(Registry(settings.endpoints.schema_registry_url), codec)
    for change in changes:
        print(change)
    if not changes:
        versions = sum(len(stream.versions) for stream in codec.streams.values())
        print(f"up to date: {len(codec.streams)} subjects, {versions} versions registered, {COMPATIBILITY}")
    return 0
