"""Avro binary writers compiled once per schema: the type checks and the encoding in one pass per field.

fastavro's schemaless_writer spends ~20 us per order event resolving unions and logical types for every
datum, and is lax (12.5 into a long, "yes" into a boolean), so the codec had to check each value's type
before handing it over. These writers cover exactly the Avro types the contracts in avro_schemas/ use;
a schema with any other type is refused when the codec loads, naming the field.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Writer = Callable[[bytearray, Any], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DOUBLE = struct.Struct("<d").pack
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_LENGTH = 36 << 1  # zigzag


class Misfit(Exception):
    """A value does not fit its field; the message names the field and the value."""


class UnsupportedSchema(Exception):
    """A schema uses an Avro type these writers do not cover."""


def epoch_millis(moment: datetime) -> int:
    """Milliseconds since the epoch, floored (as fastavro truncates); integer arithmetic on the timedelta's
    normalised parts is exact and cheaper than dividing it by a millisecond timedelta."""
    since = moment - _EPOCH
    return since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000


def _varint(out: bytearray, n: int) -> None:
    """n >= 0 (zigzag-encoded already) as a base-128 varint."""
    if n < 0x80:  # most lengths and small numbers: one byte, no loop
        out.append(n)
        return
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _expected(name: str, value: Any, expected: str) -> Misfit:
    # At most 100 characters of the value: a dead letter's reason, not a copy of a huge payload.
    return Misfit(f"{name} is {value!r:.100} ({type(value).__name__}), expected {expected}")


def _integer(name: str, bits: int, nullable: bool) -> Writer:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1)
    expected = "NoneType or int" if nullable else "int"

    def write(out: bytearray, value: Any) -> None:
        if type(value) is not int:
            raise _expected(name, value, expected)
        if not low <= value < high:
            raise Misfit(f"{name} = {value} exceeds {bits} bits")
        zigzag = (value << 1) ^ (value >> 63)
        if zigzag < 0x80:  # inline: a call per field is a measurable share of the per-event cost
            out.append(zigzag)
        else:
            _varint(out, zigzag)

    return write


def _double(name: str, nullable: bool) -> Writer:
    expected = "NoneType or float" if nullable else "float"

    def write(out: bytearray, value: Any) -> None:
        if type(value) is int:  # JSON writes 52.0 as 52: widened, unless that would round it
            try:
                widened = float(value)
            except OverflowError:
                widened = None
            if widened != value:
                raise Misfit(f"{name} = {value} does not fit a double exactly")
            value = widened
        elif type(value) is not float:
            raise _expected(name, value, expected)
        out += _DOUBLE(value)

    return write


def _boolean(name: str, nullable: bool) -> Writer:
    expected = "NoneType or bool" if nullable else "bool"

    def write(out: bytearray, value: Any) -> None:
        if type(value) is not bool:
            raise _expected(name, value, expected)
        out.append(1 if value else 0)

    return write


def _string(name: str) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if type(value) is not str:
            raise Misfit(f"must be string on field {name}")
        data = value.encode()
        length = len(data) << 1
        if length < 0x80:  # inline, as for integers
            out.append(length)
        else:
            _varint(out, length)
        out += data

    return write


def _uuid(name: str) -> Writer:
    """The canonical text PostgreSQL writes for a uuid. Any other string would be published, then fail every
    reader that converts the logical type: a poison message for all consumers instead of one dead letter."""

    def write(out: bytearray, value: Any) -> None:
        if type(value) is not str or _UUID.fullmatch(value) is None:
            raise _expected(name, value, "a UUID in canonical form")
        out.append(_UUID_LENGTH)  # 36 ASCII characters, so the string's length is one constant byte
        out += value.encode()

    return write


def _timestamp_millis(name: str) -> Writer:
    """Payload timestamps are ISO 8601 text (jsonb's rendering of timestamptz); written as epoch millis,
    truncated like every other millisecond timestamp of the contract."""

    def write(out: bytearray, value: Any) -> None:
        try:
            millis = epoch_millis(datetime.fromisoformat(value))
        except (TypeError, ValueError) as exc:
            raise Misfit(f"{exc} on field {name}") from None
        _varint(out, (millis << 1) ^ (millis >> 63))

    return write


def _string_array(name: str) -> Writer:
    item = _string(name)

    def write(out: bytearray, value: Any) -> None:
        if type(value) is not list:
            raise _expected(name, value, "list")
        if value:
            _varint(out, len(value) << 1)
            for element in value:
                item(out, element)
        out.append(0)

    return write


def _nullable(inner: Writer) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(2)  # branch 1, zigzag-encoded
            inner(out, value)

    return write


def field_writer(name: str, avro_type: Any, millis_given: bool = False) -> Writer:
    """The writer of one record field; raises UnsupportedSchema for a type outside the covered set.
    millis_given: a timestamp-millis field receives epoch milliseconds (the envelope), not ISO text."""
    nullable = isinstance(avro_type, list) and len(avro_type) == 2 and avro_type[0] == "null"
    branch = avro_type[1] if nullable else avro_type
    if isinstance(branch, dict) and branch.get("logicalType") == "timestamp-millis" and branch["type"] == "long":
        writer = _integer(name, 64, nullable) if millis_given else _timestamp_millis(name)
    elif isinstance(branch, dict) and branch.get("type") == "array" and branch.get("items") == "string":
        writer = _string_array(name)
    elif isinstance(branch, dict) and branch.get("logicalType") == "uuid" and branch["type"] == "string":
        writer = _uuid(name)
    else:
        primitive = branch
        if primitive == "string":
            writer = _string(name)
        elif primitive in ("long", "int"):
            writer = _integer(name, 64 if primitive == "long" else 32, nullable)
        elif primitive == "double":
            writer = _double(name, nullable)
        elif primitive == "boolean":
            writer = _boolean(name, nullable)
        else:
            raise UnsupportedSchema(f"field {name}: Avro type {avro_type!r} is not supported by the codec")
    return _nullable(writer) if nullable else writer
