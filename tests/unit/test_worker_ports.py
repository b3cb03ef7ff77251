"""cluster.testing.workers: each pytest-xdist worker gets its own slice of test ports."""

from __future__ import annotations

import pytest

from cluster.testing.workers import worker_slice


def test_worker_slices_are_disjoint_and_inside_the_range() -> None:
    low, top = 20000, 32768
    for count in (2, 3, 4):
        slices = [worker_slice(f"gw{i}", count, low, top) for i in range(count)]
        assert all(s is not None for s in slices)
        ports = [set(range(*s)) for s in slices if s is not None]
        assert sum(len(p) for p in ports) == len(set().union(*ports))  # disjoint
        assert all(min(p) >= low and max(p) < top and len(p) >= (top - low) // count for p in ports)


def test_outside_xdist_or_alone_the_range_is_unchanged() -> None:
    assert worker_slice("", 1, 20000, 32768) is None
    assert worker_slice("gw0", 1, 20000, 32768) is None


def test_a_worker_outside_the_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="not one of 2"):
        worker_slice("gw2", 2, 20000, 32768)
