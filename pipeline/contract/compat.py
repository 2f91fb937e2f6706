"""BACKWARD compatibility of Avro schema versions: a reader holding version N reads what N-1 wrote.

Checked by the rules that matter for the relay's flat records (checked field by field, so the error names
the field), then confirmed by decoding generated old-version records with the new version as reader.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
from fastavro.utils import generate_many


def backward_incompatibilities(new: dict[str, Any], old: dict[str, Any], samples: int = 50) -> list[str]:
    """Why `new` cannot read data written with `old` (empty when it can)."""
    problems: list[str] = []
    old_fields = {field["name"]: field for field in old["fields"]}
    for field in new["fields"]:
        if field["name"] not in old_fields and "default" not in field:
            problems.append(f"field {field['name']!r} is new and has no default")
    if problems:
        return problems
    writer = fastavro.parse_schema(old)
    reader = fastavro.parse_schema(new)
    for record in generate_many(writer, samples):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        try:
            fastavro.schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # fastavro raises several types for a resolution failure
            return [f"a record written with the old version cannot be read: {exc}"]
    return []
