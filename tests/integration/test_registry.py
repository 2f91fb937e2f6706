"""`nibble schemas apply` against the real schema registry: every stream's versions registered once, BACKWARD;
a refused change named in one line with nothing changed; the registrations survive a kill -9 of the registry.
Each test registers under subjects of its own (a random topic prefix), deleted afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from connectors.registry import Registry
from pipeline.config import load_settings
from pipeline.contract.codec import Codec
from pipeline.contract.subjects import schema_text, subject_name
from pipeline.devstack.stack import LocalStack
from pipeline.resources import AVRO_SCHEMAS
from tests.support.services import Services

REGISTRY_URL = load_settings().endpoints.schema_registry_url


@pytest.fixture
def scratch_prefix(services: Services) -> Iterator[str]:
    """A topic prefix of the test's own; its subjects are deleted afterwards."""
    prefix = f"test.registry.{uuid.uuid4().hex[:8]}."
    yield prefix
    registry = Registry(REGISTRY_URL)
    for topic in Codec(prefix).topics:
        registry.delete_subject(subject_name(topic))


def _apply(prefix: str, schemas: Path = AVRO_SCHEMAS) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIBBLE_TOPIC_PREFIX": prefix, "NIBBLE_SCHEMA_REGISTRY_URL": REGISTRY_URL}
    command = [sys.executable, "-m", "pipeline", "schemas", "apply", "--dir", str(schemas)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def _held(prefix: str) -> dict[str, list[int]]:
    """Each of the prefix's subjects and its version numbers."""
    registry = Registry(REGISTRY_URL)
    return {subject_name(topic): registry.versions(subject_name(topic)) for topic in Codec(prefix).topics}


def _copy_with(tmp_path: Path, schema_dir: str, version: int, change: dict[str, object]) -> Path:
    """avro_schemas/ copied, `schema_dir`'s v1 with `change` appended to its fields written as `version`."""
    copy = tmp_path / "avro_schemas"
    shutil.copytree(AVRO_SCHEMAS, copy)
    raw = json.loads((copy / schema_dir / "v1.avsc").read_text())
    raw["fields"].append(change)
    (copy / schema_dir / f"v{version}.avsc").write_text(json.dumps(raw))
    return copy


def test_apply_registers_every_version_once_and_a_second_run_changes_nothing(scratch_prefix: str) -> None:
    codec = Codec(scratch_prefix)
    held_in_repository = {subject_name(stream.topic): sorted(stream.versions) for stream in codec.streams.values()}
    first = _apply(scratch_prefix)
    assert first.returncode == 0, first.stderr
    registered = [line for line in first.stdout.splitlines() if line.startswith("registered ")]
    every_version = [(stream, number) for stream in codec.streams.values() for number in sorted(stream.versions)]
    assert [line.split()[1:3] for line in registered] == [
        [subject_name(stream.topic), f"v{number}"] for stream, number in every_version
    ]
    assert _held(scratch_prefix) == held_in_repository

    # A stock Confluent client finds each version, BACKWARD, under the id the apply printed.
    client = SchemaRegistryClient({"url": REGISTRY_URL})
    for line, (stream, number) in zip(registered, every_version, strict=True):
        found = client.get_version(subject_name(stream.topic), number)
        assert line.endswith(f"(schema id {found.schema_id})")
        assert fastavro.parse_schema(json.loads(found.schema.schema_str)) == stream.versions[number].parsed
        assert client.get_compatibility(subject_name(stream.topic)) == "BACKWARD"

    again = _apply(scratch_prefix)
    assert again.returncode == 0, again.stderr
    versions = sum(len(stream.versions) for stream in codec.streams.values())
    expected = f"up to date: {len(codec.topics)} subjects, {versions} versions registered, BACKWARD"
    assert again.stdout.strip() == expected
    assert _held(scratch_prefix) == held_in_repository


def test_a_compatible_new_version_is_registered_after_the_first(scratch_prefix: str, tmp_path: Path) -> None:
    assert _apply(scratch_prefix).returncode == 0
    optional = {"name": "courier_note", "type": ["null", "string"], "default": None}
    # deliveries: a stream whose only version is v1 (orders and tickets have a v2 since 0027)
    result = _apply(scratch_prefix, _copy_with(tmp_path, "deliveries", 2, optional))
    assert result.returncode == 0, result.stderr
    registered = f"registered {scratch_prefix}nibble.deliveries-value v2 (schema id "
    assert result.stdout.splitlines()[0].startswith(registered)
    assert _held(scratch_prefix)[f"{scratch_prefix}nibble.deliveries-value"] == [1, 2]


def test_an_incompatible_change_is_refused_in_one_line_and_nothing_changes(scratch_prefix: str, tmp_path: Path) -> None:
    assert _apply(scratch_prefix).returncode == 0
    before = _held(scratch_prefix)
    # Deliveries (checked first) gets a compatible v2, drivers (checked later) one the registry refuses: neither lands.
    schemas = _copy_with(
        tmp_path, "deliveries", 2, {"name": "courier_note", "type": ["null", "string"], "default": None}
    )
    raw = json.loads((schemas / "drivers" / "v1.avsc").read_text())
    raw["fields"].append({"name": "licence_plate", "type": "string"})
    (schemas / "drivers" / "v2.avsc").write_text(json.dumps(raw))

    result = _apply(scratch_prefix, schemas)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("nibble schemas: stream driver: ")
    assert "'licence_plate' is new and has no default" in line
    assert _held(scratch_prefix) == before


def test_a_registered_version_edited_in_place_is_refused(scratch_prefix: str, tmp_path: Path) -> None:
    assert _apply(scratch_prefix).returncode == 0
    edited = _copy_with(tmp_path, "restaurants", 1, {"name": "rating", "type": ["null", "int"], "default": None})
    result = _apply(scratch_prefix, edited)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"nibble schemas: stream restaurant: subject {scratch_prefix}nibble.restaurants-value holds "
    )
    assert "append-only" in line


def test_registrations_survive_a_kill_9_of_the_registry(scratch_prefix: str) -> None:
    assert _apply(scratch_prefix).returncode == 0
    registry = Registry(REGISTRY_URL)
    codec = Codec(scratch_prefix)
    schemas = {subject_name(stream.topic): schema_text(stream.latest) for stream in codec.streams.values()}
    before = {subject: registry.lookup(subject, schema) for subject, schema in schemas.items()}
    assert None not in before.values()

    LocalStack(load_settings()).restart("schema-registry", hard=True)

    assert {subject: registry.lookup(subject, schema) for subject, schema in schemas.items()} == before
    again = _apply(scratch_prefix)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("up to date")


def test_a_registry_that_does_not_answer_is_one_line_naming_its_setting(services: Services) -> None:
    env = {**os.environ, "NIBBLE_SCHEMA_REGISTRY_URL": "http://127.0.0.1:9/apis/ccompat/v7"}
    command = [sys.executable, "-m", "pipeline", "schemas", "apply"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("nibble schemas: the schema registry at http://127.0.0.1:9/apis/ccompat/v7: ")
    assert "NIBBLE_SCHEMA_REGISTRY_URL" in line
