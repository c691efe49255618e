"""95% intervals for the evaluation's figures: Wilson for a share of hits, a document bootstrap
for a ratio of sums (bits per byte).

    wilson(hits=50, n=100)                        # -> (0.4038, 0.5962)
    bootstrap_ratio(bits_per_doc, bytes_per_doc)  # -> (lo, hi) of sum(bits) / sum(bytes)

Documents, not tokens, are the resampled unit: tokens of one document are not independent (one
document's recalls share its memory), so a token bootstrap would give intervals too narrow.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.96  # the standard normal's 97.5% quantile, as usually rounded
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
_CHUNK = 100  # resamples drawn at once: memory stays at _CHUNK x documents


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of hits / n (None when n is 0); unlike p ± z·se it stays inside
    [0, 1] and is not zero-width at 0 or n hits."""
    if n <= 0:
        return None
    p = hits / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_ratio(numerators: Sequence[float], denominators: Sequence[float],
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of sum(numerators) / sum(denominators), resampling the
    paired per-document sums with replacement; None without a positive denominator. Resamples
    whose denominators sum to 0 (no recall bytes drawn) are left out."""
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError(f"{num.shape[0]} numerators but {den.shape[0]} denominators")
    if num.size == 0 or den.sum() <= 0:
        return None
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, _CHUNK):
        picks = rng.integers(0, num.size, size=(min(_CHUNK, resamples - start), num.size))
        drawn = den[picks].sum(axis=1)
        keep = drawn > 0
        ratios.append(num[picks].sum(axis=1)[keep] / drawn[keep])
    values = np.concatenate(ratios)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)
