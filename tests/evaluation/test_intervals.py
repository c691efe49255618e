"""The interval math against values worked out by hand."""
import pytest

from evaluation.intervals import bootstrap_ratio, wilson


@pytest.mark.parametrize("hits, n, lo, hi", [
    (0, 35, 0.0, 0.098904),     # center = half = (z²/2n) / (1 + z²/n) = 0.054880 / 1.109760
    (1, 126, 0.001403, 0.043588),
    (50, 100, 0.403830, 0.596170),
])
def test_wilson_matches_hand_computed_bounds(hits, n, lo, hi):
    assert wilson(hits, n) == pytest.approx((lo, hi), abs=2e-6)


def test_wilson_is_none_without_samples_and_narrows_with_more():
    assert wilson(0, 0) is None
    small, large = wilson(5, 10), wilson(500, 1000)
    assert small[1] - small[0] > large[1] - large[0]


def test_bootstrap_of_a_constant_ratio_has_zero_width():
    lo, hi = bootstrap_ratio([2.0, 4.0, 6.0, 0.5], [1.0, 2.0, 3.0, 0.25])
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)


def test_bootstrap_is_deterministic_under_its_seed_and_brackets_the_ratio():
    bits = [float(i % 7) for i in range(50)]
    nbytes = [1.0 + i % 3 for i in range(50)]
    first = bootstrap_ratio(bits, nbytes, seed=3)
    assert bootstrap_ratio(bits, nbytes, seed=3) == first
    assert bootstrap_ratio(bits, nbytes, seed=4) != first
    assert first[0] < sum(bits) / sum(nbytes) < first[1]


def test_bootstrap_needs_bytes_and_paired_inputs():
    assert bootstrap_ratio([], []) is None
    assert bootstrap_ratio([1.0], [0.0]) is None
    with pytest.raises(ValueError, match="2 numerators but 1 denominators"):
        bootstrap_ratio([1.0, 2.0], [1.0])
