"""The pure privacy rules of migration 0027: the coarsening of drop-off points (pipeline/privacy/coarsening.py)
and the customer id `nibble forget` takes."""

from __future__ import annotations

import math

import pytest

from pipeline.privacy.coarsening import cell_size_m, coarse_coordinate, is_coarse
from pipeline.privacy.forgetting import parse_customer


@pytest.mark.parametrize(
    ("exact", "coarse"),
    [
        (52.52049, 52.52),
        (13.40512, 13.405),
        (13.4055, 13.406),  # half away from zero, as PostgreSQL's numeric round
        (-13.4055, -13.406),
        (-0.0004, -0.0),
        (48.8566, 48.857),
        (0.0, 0.0),
    ],
)
def test_a_point_is_rounded_to_three_decimals(exact: float, coarse: float) -> None:
    assert coarse_coordinate(exact) == coarse


def test_a_coarse_value_is_a_fixed_point_and_an_exact_one_is_not() -> None:
    assert is_coarse(52.52) and is_coarse(13.405) and is_coarse(coarse_coordinate(math.pi))
    assert not is_coarse(52.52049)


def test_a_coarse_point_is_within_half_a_cell_of_the_exact_one() -> None:
    for i in range(1000):
        exact = -80 + i * 0.1603719
        assert abs(coarse_coordinate(exact) - exact) <= 0.0005 + 1e-12


def test_the_cell_is_about_a_hundred_metres() -> None:
    north_south, east_west = cell_size_m(52.52)
    assert north_south == pytest.approx(111.2, abs=0.1)
    assert east_west == pytest.approx(67.7, abs=0.1)


def test_a_customer_is_named_by_a_uuid() -> None:
    assert str(parse_customer(" 6f1c1a8e-0c4e-4d55-9a63-0f8f7c3e2b10 ")) == "6f1c1a8e-0c4e-4d55-9a63-0f8f7c3e2b10"
    with pytest.raises(Exception, match="not a customer id"):
        parse_customer("alice@example.com")
