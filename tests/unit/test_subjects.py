"""How `nibble schemas apply` names what makes a new version unreadable for the old one's data (pure logic)."""

from __future__ import annotations

import json

from pipeline.contract.subjects import field_differences, subject_name, why_incompatible
from pipeline.resources import AVRO_SCHEMAS

DRIVERS_V1 = json.loads((AVRO_SCHEMAS / "drivers" / "v1.avsc").read_text())


def with_fields(*fields: dict[str, object], without: str = "") -> dict[str, object]:
    kept = [field for field in DRIVERS_V1["fields"] if field["name"] != without]
    return {**DRIVERS_V1, "fields": [*kept, *fields]}


def test_the_subject_is_the_topic_name_strategy_of_the_value() -> None:
    assert subject_name("nibble.drivers") == "nibble.drivers-value"


def test_a_new_field_without_default_is_named() -> None:
    new = with_fields({"name": "rating", "type": "double"})
    assert why_incompatible(new, DRIVERS_V1) == ["field 'rating' is new and has no default"]


def test_an_unreadable_type_change_is_named_by_its_field() -> None:
    changed = [field if field["name"] != "is_active" else {**field, "type": "int"} for field in DRIVERS_V1["fields"]]
    new = {**DRIVERS_V1, "fields": changed}
    assert why_incompatible(new, DRIVERS_V1) == ['field \'is_active\' changed type from "boolean" to "int"']


def test_a_compatible_version_has_no_reason() -> None:
    optional = {"name": "rating", "type": ["null", "double"], "default": None}
    assert why_incompatible(with_fields(optional), DRIVERS_V1) == []


def test_field_differences_name_added_removed_and_changed_fields() -> None:
    new = with_fields({"name": "rating", "type": "double"}, without="is_active")
    assert field_differences(new, DRIVERS_V1) == "fields added: rating; fields removed: is_active"
    assert field_differences(DRIVERS_V1, DRIVERS_V1) == "no field differs"
