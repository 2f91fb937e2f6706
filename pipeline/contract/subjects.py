"""Every stream's Avro versions in the schema registry (`nibble schemas apply`, docs/events.md): registered in
order under the topic's `-value` subject (Confluent's topic-name strategy), with BACKWARD compatibility.

The repository stays the source of truth: a subject must hold exactly the stream's first versions (subject
version N is vN.avsc), and every version still to register is checked (by the registry where it can judge,
and by the rules of compat.py) before any is registered, so a refused change registers nothing. A second run
finds everything in place and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connectors.registry import Registry, RegistryError
from pipeline.contract.codec import Codec, SchemaIdLookup, SchemaVersion, Stream
from pipeline.contract.compat import backward_incompatibilities
from pipeline.errors import NibbleError

COMPATIBILITY = "BACKWARD"
# The registry's answers to a schema its compatibility rule refuses, and to one it cannot parse.
REFUSALS = (409, 422)


class SchemaRefused(NibbleError):
    """A stream's schemas cannot be registered as they are; the message names the stream and the field."""


class SchemaIdUnavailable(NibbleError):
    """The registry cannot give a version's id now (it does not answer, or the version is not registered)."""


def subject_name(topic: str) -> str:
    return f"{topic}-value"


def schema_text(version: SchemaVersion) -> str:
    return json.dumps(version.raw)


@dataclass(frozen=True)
class SubjectPlan:
    stream: Stream
    subject: str
    registered: list[SchemaVersion]  # the stream's versions the subject holds, in order
    pending: list[SchemaVersion]  # the ones to register after them, in order


def apply_subjects(registry: Registry, codec: Codec) -> list[str]:
    """Register what is missing; the changes made, one line each (empty: everything was in place).
    Raises SchemaRefused, before any change, when a stream's versions cannot be registered."""
    plans = [plan_subject(registry, stream) for stream in codec.streams.values()]
    for plan in plans:
        check(registry, plan)
    changes: list[str] = []
    for plan in plans:
        changes += _register(registry, plan)
    return changes


def plan_subject(registry: Registry, stream: Stream) -> SubjectPlan:
    """Which of the stream's versions the subject holds; raises SchemaRefused when it holds anything else."""
    subject = subject_name(stream.topic)
    versions = [stream.versions[number] for number in sorted(stream.versions)]
    held = registry.versions(subject)
    matched: list[int] = []
    for version in versions:
        found = registry.lookup(subject, schema_text(version))
        if found is None:
            break
        matched.append(found.version)
    # Subject version N is vN.avsc, so a consumer can find the version a message's header names.
    if not matched == held == [version.version for version in versions[: len(held)]]:
        raise SchemaRefused(
            f"stream {stream.aggregate_type}: subject {subject} holds versions {held} but only {matched} match "
            f"the repository's v1..v{len(versions)} in order (a schema edited after it was registered?); versions "
            "are append-only: add a new vN.avsc instead"
        )
    return SubjectPlan(stream, subject, versions[: len(matched)], versions[len(matched) :])


def registered_ids(registry: Registry) -> SchemaIdLookup:
    """The Codec's look-up of a version's schema id: the id under the topic's subject, which must hold the
    version as its own number (what `apply_subjects` registers)."""

    def schema_id(stream: Stream, version: SchemaVersion) -> int:
        subject = subject_name(stream.topic)
        try:
            found = registry.lookup(subject, schema_text(version))
        except RegistryError as exc:
            raise SchemaIdUnavailable(f"schema registry: {exc}") from None
        if found is None or found.version != version.version:
            raise SchemaIdUnavailable(
                f"{subject} does not hold stream {stream.aggregate_type} v{version.version} as its version "
                f"{version.version}: run `nibble schemas apply`"
            )
        return found.id

    return schema_id


def check(registry: Registry, plan: SubjectPlan) -> None:
    """Each pending version must read what the one before it wrote: asked of the registry for the first (it
    judges a version against its latest only), and by compat.py's rules, which name the field, for all."""
    previous = plan.registered[-1] if plan.registered else None
    ask_registry = previous is not None
    for version in plan.pending:
        if previous is not None:
            refused = ask_registry and not _compatible(registry, plan, version)
            reasons = why_incompatible(version.raw, previous.raw)
            if refused and not reasons:
                reasons = [f"the schema registry refuses it ({field_differences(version.raw, previous.raw)})"]
            if reasons:
                raise SchemaRefused(
                    f"stream {plan.stream.aggregate_type}: {plan.subject} v{version.version} is not {COMPATIBILITY} "
                    f"compatible with v{previous.version}: {'; '.join(reasons)}; nothing registered"
                )
        previous = version
        ask_registry = False


def _compatible(registry: Registry, plan: SubjectPlan, version: SchemaVersion) -> bool:
    try:
        return registry.compatible(plan.subject, schema_text(version))
    except RegistryError as exc:
        if exc.status not in REFUSALS:
            raise
        raise _refused(plan, version, exc) from None


def _refused(plan: SubjectPlan, version: SchemaVersion, exc: RegistryError) -> SchemaRefused:
    return SchemaRefused(f"stream {plan.stream.aggregate_type}: {plan.subject} v{version.version} refused: {exc}")


def _register(registry: Registry, plan: SubjectPlan) -> list[str]:
    changes = []
    if registry.compatibility(plan.subject) != COMPATIBILITY:
        registry.set_compatibility(plan.subject, COMPATIBILITY)
        changes.append(f"{plan.subject}: compatibility {COMPATIBILITY}")
    for version in plan.pending:
        try:
            schema_id = registry.register(plan.subject, schema_text(version))
        except RegistryError as exc:
            # After the check passed: another `apply` at the same time, or a first version the registry cannot parse.
            if exc.status not in REFUSALS:
                raise
            raise _refused(plan, version, exc) from None
        changes.append(f"registered {plan.subject} v{version.version} (schema id {schema_id})")
    return changes


def why_incompatible(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """compat.py's reasons `new` cannot read what `old` wrote, a failed read named by the fields whose type
    changed."""
    reasons = backward_incompatibilities(new, old)
    if reasons and not reasons[0].startswith("field "):
        old_types = {field["name"]: field["type"] for field in old["fields"]}
        changed = [
            f"field {field['name']!r} changed type from {json.dumps(old_types[field['name']])} to "
            f"{json.dumps(field['type'])}"
            for field in new["fields"]
            if field["name"] in old_types and field["type"] != old_types[field["name"]]
        ]
        return changed or reasons
    return reasons


def field_differences(new: dict[str, Any], old: dict[str, Any]) -> str:
    """The fields added, removed or changed from `old` to `new`, by name."""
    old_fields = {field["name"]: field for field in old["fields"]}
    new_fields = {field["name"]: field for field in new["fields"]}
    parts = [
        ("added", [name for name in new_fields if name not in old_fields]),
        ("removed", [name for name in old_fields if name not in new_fields]),
        ("changed", [name for name in new_fields if name in old_fields and new_fields[name] != old_fields[name]]),
    ]
    return "; ".join(f"fields {how}: {', '.join(names)}" for how, names in parts if names) or "no field differs"
