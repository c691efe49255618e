"""W*: where `full`'s curve against its context cap reaches another variant's level."""
import pytest

from evaluation.effective_context import CurvePoint, effective_context

ACC = [CurvePoint(32, 0.10, 90.0), CurvePoint(64, 0.30, 120.0), CurvePoint(128, 0.70, 170.0),
       CurvePoint(192, 0.90, 210.0)]


def test_interpolates_between_the_bracketing_caps():
    match = effective_context(ACC, target=0.5, higher_is_better=True)
    assert match.cap == pytest.approx(96.0) and match.positions == pytest.approx(145.0)
    assert match.multiplier(74.0) == pytest.approx(145.0 / 74.0)
    assert effective_context(ACC, 0.3, True).cap == pytest.approx(64.0)  # exactly at a point
    assert effective_context(ACC, 0.8, True).cap == pytest.approx(160.0)


def test_lower_is_better_for_bits():
    bpb = [CurvePoint(32, 2.0, 90.0), CurvePoint(64, 1.5, 120.0), CurvePoint(128, 0.5, 170.0)]
    match = effective_context(bpb, target=1.0, higher_is_better=False)
    assert match.cap == pytest.approx(96.0) and match.positions == pytest.approx(145.0)


def test_outside_the_swept_caps_is_a_bound_not_a_number():
    above = effective_context(ACC, 0.95, True)
    assert above.cap is None and above.note == "not matched up to the largest cap, 192"
    below = effective_context(ACC, 0.05, True)
    assert below.cap is None and below.note == "matched already at the smallest cap, 32"
    assert below.multiplier(74.0) is None


def test_the_first_crossing_of_a_noisy_curve_counts_and_order_does_not_matter():
    noisy = [CurvePoint(128, 0.65, 170.0), CurvePoint(32, 0.1, 90.0), CurvePoint(64, 0.6, 120.0),
             CurvePoint(192, 0.9, 210.0)]
    assert effective_context(noisy, 0.35, True).cap == pytest.approx(48.0)
    assert effective_context(noisy, 0.62, True).cap == pytest.approx(64 + 64 * 0.4)
