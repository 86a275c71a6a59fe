"""Per-session sequence bookkeeping: what was received, what is durable, what is missing.

Sequence numbers count samples: a chunk covers ``[first_seq, first_seq + count)``. The tracker
answers three questions for each arriving chunk: is it new, a duplicate (drop — resending is
always safe) or a partial overlap (keep only the new part); and did it open a gap (counted and
reported, then closed when the missing samples are resent). Nothing here drops a sample that was
not already received.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RangeSet:
    """Sorted, disjoint, half-open integer ranges [start, end) with merge-on-insert."""

    ranges: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, end: int) -> None:
        """Insert [start, end), merging neighbours."""
        if end <= start:
            return
        out: list[tuple[int, int]] = []
        placed = False
        for s, e in self.ranges:
            if e < start:
                out.append((s, e))
            elif end < s:
                if not placed:
                    out.append((start, end))
                    placed = True
                out.append((s, e))
            else:
                start, end = min(s, start), max(e, end)
        if not placed:
            out.append((start, end))
        self.ranges = out

    def uncovered(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not yet covered."""
        parts: list[tuple[int, int]] = []
        cur = start
        for s, e in self.ranges:
            if e <= cur:
                continue
            if s >= end:
                break
            if s > cur:
                parts.append((cur, min(s, end)))
            cur = max(cur, e)
            if cur >= end:
                break
        if cur < end:
            parts.append((cur, end))
        return parts

    def contiguous_end(self, base: int) -> int:
        """End of the run that starts at `base` (== base if `base` is not covered)."""
        for s, e in self.ranges:
            if s <= base < e:
                return e
            if s > base:
                break
        return base

    def holes(self, base: int) -> list[tuple[int, int]]:
        """Missing ranges between `base` and the highest covered sample."""
        if not self.ranges:
            return []
        top = self.ranges[-1][1]
        return self.uncovered(base, top)


@dataclass(slots=True)
class Admission:
    """Verdict on one chunk: the sub-ranges to keep (empty = pure duplicate)."""

    keep: list[tuple[int, int]]
    duplicate_samples: int
    opened_gap: bool


@dataclass(slots=True)
class SessionSequence:
    """Receive-side sequence state of one session. Sequence numbers start at `base` (0)."""

    base: int = 0
    received: RangeSet = field(default_factory=RangeSet)
    durable_upto: int = -1  # highest contiguous durable seq (inclusive), -1 = none
    chunks: int = 0
    samples: int = 0
    duplicate_chunks: int = 0
    duplicate_samples: int = 0
    gaps_detected: int = 0

    def admit(self, first_seq: int, count: int) -> Admission:
        """Classify [first_seq, first_seq+count) and record the kept part as received."""
        end = first_seq + count
        ranges = self.received.ranges
        if (len(ranges) == 1 and ranges[0][1] == first_seq) or (not ranges and first_seq == self.base):
            # The common case: the next contiguous chunk (one range, extended in place).
            ranges[:] = [(ranges[0][0] if ranges else first_seq, end)]
            self.chunks += 1
            self.samples += count
            return Admission(keep=[(first_seq, end)], duplicate_samples=0, opened_gap=False)
        keep = self.received.uncovered(first_seq, end)
        kept = sum(e - s for s, e in keep)
        dup = count - kept
        expected = self.received.contiguous_end(self.base)
        top = self.received.ranges[-1][1] if self.received.ranges else self.base
        opened = bool(keep) and keep[0][0] > max(expected, top)
        if not keep:
            self.duplicate_chunks += 1
        if opened:
            self.gaps_detected += 1
        self.duplicate_samples += dup
        for s, e in keep:
            self.received.add(s, e)
        if keep:
            self.chunks += 1
            self.samples += kept
        return Admission(keep=keep, duplicate_samples=dup, opened_gap=opened)

    @property
    def received_upto(self) -> int:
        """Highest contiguous received seq (inclusive), -1 if none."""
        return self.received.contiguous_end(self.base) - 1

    @property
    def highest_received(self) -> int:
        """Highest seq received, contiguous or not (-1 if none): DATA_ACK's received_seq."""
        return self.received.ranges[-1][1] - 1 if self.received.ranges else -1

    @property
    def open_gaps(self) -> list[tuple[int, int]]:
        """Ranges still missing below the highest received sample."""
        return self.received.holes(self.base)

    def to_dict(self) -> dict[str, object]:
        """Counters for status and the API."""
        return {
            "chunks": self.chunks,
            "samples": self.samples,
            "received_upto": self.received_upto,
            "durable_upto": self.durable_upto,
            "duplicate_chunks": self.duplicate_chunks,
            "duplicate_samples": self.duplicate_samples,
            "gaps_detected": self.gaps_detected,
            "open_gaps": [list(g) for g in self.open_gaps],
        }
