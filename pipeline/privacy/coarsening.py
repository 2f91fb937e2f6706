"""What analytics may hold of a place or a person (docs/security.md, "Analytics without personal data").

Migration 0027's payloads round every drop-off point with `public.coarse_coordinate`: 3 decimals of a degree,
half away from zero on the value's 15 significant digits, as PostgreSQL's `round(float8::numeric, 3)` does.
`coarse_coordinate` here is the same rule, for checks that compare with what the payloads carry.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

DECIMALS = 3
STEP = Decimal(1).scaleb(-DECIMALS)  # 0.001 degrees
EARTH_METRES_PER_DEGREE = 111_195.0  # of latitude (a sphere of PostGIS's mean radius, 6,371,008.8 m)


def coarse_coordinate(degrees: float) -> float:
    """A latitude or longitude as migration 0027 publishes it (float8 -> numeric keeps 15 digits)."""
    return float(Decimal(f"{degrees:.15g}").quantize(STEP, rounding=ROUND_HALF_UP))


def is_coarse(degrees: float) -> bool:
    """Whether a published coordinate is already on the grid (a coarse value read back through Avro or Pinot)."""
    return coarse_coordinate(degrees) == degrees


def cell_size_m(latitude: float) -> tuple[float, float]:
    """The grid cell at `latitude`, (north-south, east-west) in metres: what a published drop-off point
    leaves of where the customer is."""
    step = float(STEP) * EARTH_METRES_PER_DEGREE
    return step, step * math.cos(math.radians(latitude))
