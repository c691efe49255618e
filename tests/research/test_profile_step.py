"""research/profile_step.py: the phases of a training step, triplet against raw."""
from research.profile_step import PHASES, profile


def test_profile_times_every_phase_and_counts_the_encoder_only_for_triplet():
    result = profile("configs/tiny.yaml", repeats=1, memory_rope=None, accum=2)
    raw, triplet = result["ms"]["raw"], result["ms"]["triplet"]
    assert result["shape"] == {"layers": 2, "width": 128, "T": 64, "M": 16, "B": 16, "accum": 2}
    assert raw["encode"] == 0.0 and triplet["encode"] > 0.0
    for ms in (raw, triplet):
        assert all(ms[p] >= 0.0 for p in PHASES) and ms["forward"] > 0.0 and ms["muon"] > 0.0
        # the phases partition the step (up to zero_grad and the timer itself)
        assert 0.9 * ms["step"] <= sum(ms[p] for p in PHASES) <= ms["step"]
    assert result["triplet_over_raw"] > 0.0 and result["triplet_over_raw_forward_backward"] > 0.0
