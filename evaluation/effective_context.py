"""Effective context W*: the raw context at which `full` matches a memory variant.

`full` is trained at several context caps (a sweep over `train.full_context_cap`); its curve of a
metric against the cap is read piecewise-linearly, and W* is the smallest cap at which the curve
reaches the other variant's level (RULER's "effective length", the equivalent raw window of
REFERENCE.md). Between the two sweep points that bracket the crossing, `full`'s attention
positions per window are interpolated the same way: `positions` at W* over the other variant's
positions is the multiplier, how many raw-context positions one of its positions is worth.

    curve = [CurvePoint(cap=32, value=0.10, positions=95.0), CurvePoint(64, 0.30, 126.0), ...]
    match = effective_context(curve, target=0.5, higher_is_better=True)
    match.cap, match.positions, match.note
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence


class CurvePoint(NamedTuple):
    """`full` at one cap: the metric's value (mean over seeds) and its attention positions."""
    cap: float
    value: float
    positions: float


@dataclass(frozen=True)
class Match:
    """Where `full` matches a level: W* (a cap) and `full`'s positions there; both None when the
    sweep does not bracket it, and `note` says which side."""
    cap: float | None
    positions: float | None
    note: str = ""

    def multiplier(self, positions_used: float | None) -> float | None:
        """W*'s positions over the positions the matched variant uses."""
        if self.positions is None or not positions_used:
            return None
        return self.positions / positions_used


def effective_context(curve: Sequence[CurvePoint], target: float,
                      higher_is_better: bool) -> Match:
    """The smallest cap at which the piecewise-linear `curve` reaches `target` (see the module
    docstring); the curve need not be monotone: its first crossing counts."""
    points = sorted(curve)
    if not points:
        return Match(None, None, "no points")
    sign = 1.0 if higher_is_better else -1.0
    short = [sign * (p.value - target) for p in points]  # >= 0: `full` matches or beats it
    if short[0] >= 0:
        return Match(None, None, f"matched already at the smallest cap, {points[0].cap:g}")
    for (a, b), (da, db) in zip(zip(points, points[1:]), zip(short, short[1:])):
        if da < 0 <= db:
            t = (target - a.value) / (b.value - a.value)
            return Match(a.cap + t * (b.cap - a.cap),
                         a.positions + t * (b.positions - a.positions))
    return Match(None, None, f"not matched up to the largest cap, {points[-1].cap:g}")
