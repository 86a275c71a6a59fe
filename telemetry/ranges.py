"""Sets of stored sequence numbers as sorted, merged closed intervals.

A session normally has one interval [0, k]; holes appear only when frames are still missing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


class RangeSet:
    """Closed integer intervals ``[lo, hi]``, kept sorted and merged (adjacent ones joined)."""

    __slots__ = ("_iv",)

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._iv: list[tuple[int, int]] = []
        for lo, hi in intervals:
            self.add(lo, hi)

    def copy(self) -> RangeSet:
        out = RangeSet()
        out._iv = list(self._iv)
        return out

    @property
    def intervals(self) -> list[tuple[int, int]]:
        return list(self._iv)

    def __len__(self) -> int:
        return len(self._iv)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and self._iv == other._iv

    def __repr__(self) -> str:
        return f"RangeSet({self._iv!r})"

    def add(self, lo: int, hi: int) -> None:
        """Add ``[lo, hi]`` (inclusive), merging with overlapping or adjacent intervals."""
        if hi < lo:
            return
        iv = self._iv
        if not iv or lo > iv[-1][1] + 1:  # the common case: new data after everything stored
            iv.append((lo, hi))
            return
        last_lo, last_hi = iv[-1]
        if lo >= last_lo:  # overlaps or extends the last interval only
            iv[-1] = (last_lo, max(last_hi, hi))
            return
        out: list[tuple[int, int]] = []
        placed = False
        for a, b in self._iv:
            if b + 1 < lo:
                out.append((a, b))
            elif hi + 1 < a:
                if not placed:
                    out.append((lo, hi))
                    placed = True
                out.append((a, b))
            else:
                lo, hi = min(lo, a), max(hi, b)
        if not placed:
            out.append((lo, hi))
        out.sort()
        self._iv = out

    def add_seqs(self, seqs: npt.NDArray[np.int64]) -> None:
        """Add every value of a sorted array (runs of consecutive values become intervals)."""
        if seqs.size == 0:
            return
        breaks = np.flatnonzero(np.diff(seqs) != 1)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [seqs.size - 1]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self.add(int(seqs[s]), int(seqs[e]))

    def disjoint(self, lo: int, hi: int) -> bool:
        """True when no stored seq lies in ``[lo, hi]`` (then every row of it is new)."""
        iv = self._iv
        if not iv or lo > iv[-1][1] or hi < iv[0][0]:
            return True
        return all(b < lo or a > hi for a, b in iv)

    def add_if_new(self, lo: int, hi: int) -> bool:
        """Add ``[lo, hi]`` and return True when none of it was stored yet; otherwise change
        nothing and return False (the caller filters row by row). The writer calls this once per
        chunk, so the common case (right after the last interval) is a few comparisons."""
        iv = self._iv
        if iv:
            last_lo, last_hi = iv[-1]
            if lo == last_hi + 1:
                iv[-1] = (last_lo, hi)
                return True
            if lo <= last_hi and not self.disjoint(lo, hi):
                return False
        self.add(lo, hi)
        return True

    def missing_mask(self, seqs: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """True where a seq is NOT yet in the set (those rows still need storing)."""
        keep = np.ones(seqs.shape, dtype=bool)
        if not self._iv or seqs.size == 0:
            return keep
        smin, smax = int(seqs.min()), int(seqs.max())
        for lo, hi in self._iv:
            if hi < smin or lo > smax:
                continue
            keep &= (seqs < lo) | (seqs > hi)
        return keep

    def contiguous_upto(self, start: int = 0) -> int:
        """Highest k with every seq in [start, k] present; ``start - 1`` if ``start`` is absent."""
        for lo, hi in self._iv:
            if lo <= start <= hi:
                return hi
        return start - 1

    def count(self) -> int:
        """How many seqs the set holds."""
        return sum(hi - lo + 1 for lo, hi in self._iv)
