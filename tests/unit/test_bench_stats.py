"""The benchmarks' statistics helpers: median, and p95 by the nearest-rank method."""

from __future__ import annotations

import pytest

from bench.common import median, percentile, summary


def test_median_of_odd_and_even_counts() -> None:
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([7]) == 7


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 21))  # 1..20: rank ceil(0.95 * 20) = 19
    assert percentile(values, 95) == 19
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([10, 20, 30], 95) == 30  # rank ceil(2.85) = 3
    assert percentile([10, 20, 30], 50) == 20
    assert percentile([5, 1, 4, 2, 3], 100) == 5
    assert percentile([5, 1, 4, 2, 3], 1) == 1


def test_percentile_is_always_a_measured_value() -> None:
    values = [0.5, 12.0, 3.25, 7.0, 0.75, 100.0]
    for pct in (1, 25, 50, 90, 95, 99, 100):
        assert percentile(values, pct) in values


def test_empty_or_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        median([])
    with pytest.raises(ValueError):
        percentile([], 95)
    with pytest.raises(ValueError):
        percentile([1, 2], 0)
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_summary() -> None:
    s = summary([4.0, 1.0, 3.0, 2.0])
    assert s == {"n": 4, "min": 1.0, "median": 2.5, "p95": 4.0, "max": 4.0, "mean": 2.5}
