"""The automated referee: a mark computed from the stored samples, with what it rests on.

A mark is reproducible by construction: its inputs are identified (session, sequence range,
frame count), digested (SHA-256 over the exact stored frames in sequence order, over the
canonical rubric document, and the kernel version) and its output is stored as canonical JSON.
Re-computing reads the same frames back, checks the data digest, scores them with the same
kernels and compares the canonical JSON byte for byte (floats are written with Python's
shortest round-trip ``repr``, so equal text means bit-identical numbers).

Digest layout (``data_sha256``), all little-endian, frames ordered by ``seq``::

    b"labctl-frames-v1" | n:u64 | trackers:u64 | analog:u64 | seq:i64[n] | rig_time:f64[n]
    | poses:f32[n,trackers,7] | analog:f32[n,analog] | valid_mask:i32[n]

``mark_sha256`` = SHA-256 of ``data_sha256 | rubric_sha256 | kernel_version | rate_hz |
tool_index`` (text, ``|``-separated) — one value to quote in an appeal.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from lab_controller.exercises import load_exercise
from lab_controller.pipeline import KERNEL_VERSION as PIPELINE_KERNEL_VERSION
from lab_controller.scoring import FinalResult, SessionScorer
from sim_kernels.rubric import Rubric

DIGEST_TAG = b"labctl-frames-v1"


class Frames(Protocol):
    """What the referee reads (``telemetry.queries.SessionFrames`` has this shape)."""

    @property
    def seq(self) -> NDArray[np.int64]: ...
    @property
    def rig_time(self) -> NDArray[np.float64]: ...
    @property
    def poses(self) -> NDArray[np.float32]: ...
    @property
    def analog(self) -> NDArray[np.float32]: ...
    @property
    def valid_mask(self) -> NDArray[np.int32]: ...


@lru_cache(maxsize=1)
def kernel_version() -> str:
    """The pipeline's kernel version plus a digest of the kernels' source code.

    Any edit of ``sim_kernels`` changes it, so a mark says exactly which arithmetic made it.
    """
    import sim_kernels

    h = hashlib.sha256()
    root = Path(sim_kernels.__file__).resolve().parent
    for p in sorted(root.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{PIPELINE_KERNEL_VERSION}+{h.hexdigest()[:12]}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, non-finite floats as the strings "NaN"/"Infinity"/"-Infinity"."""
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, dict):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, np.generic):
        return _finite(v.item())
    return v


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def rubric_sha256(rubric: dict[str, Any]) -> str:
    return sha256_text(canonical_json(rubric))


def data_sha256(f: Frames) -> str:
    n = int(f.seq.shape[0])
    trackers = int(f.poses.shape[1]) if f.poses.ndim == 3 else 0
    analog = int(f.analog.shape[1]) if f.analog.ndim == 2 else 0
    h = hashlib.sha256(DIGEST_TAG)
    h.update(np.array([n, trackers, analog], "<u8").tobytes())
    h.update(np.ascontiguousarray(f.seq, "<i8").tobytes())
    h.update(np.ascontiguousarray(f.rig_time, "<f8").tobytes())
    h.update(np.ascontiguousarray(f.poses, "<f4").tobytes())
    h.update(np.ascontiguousarray(f.analog, "<f4").tobytes())
    h.update(np.ascontiguousarray(f.valid_mask, "<i4").tobytes())
    return h.hexdigest()


def result_dict(r: FinalResult) -> dict[str, Any]:
    d: dict[str, Any] = dataclasses.asdict(r)
    return d


@dataclass(frozen=True)
class Mark:
    """A computed mark with the identity of its inputs."""

    seq_lo: int
    seq_hi: int
    frames: int
    data_sha256: str
    rubric_id: str
    rubric_version: int
    rubric_sha256: str
    kernel_version: str
    rate_hz: float
    tool_index: int
    mark_sha256: str
    score: float
    passed: bool
    result: dict[str, Any]
    result_text: str


def compute_mark(frames: Frames, exercise_id: str, rubric: dict[str, Any], rate_hz: float,
                 tool_index: int = 0) -> Mark:
    """Score stored frames under ``rubric`` (a rubric document) with the current kernels.

    Frames are fed in runs of consecutive sequence numbers (a gap starts a new run at its own
    rig time), each run as one chunk: the scorer is chunk-invariant (tests/scoring).
    """
    rb = Rubric.from_dict(rubric)
    ex = load_exercise(exercise_id)
    scorer = SessionScorer(ex.scene["geometry"], ex.reference.tool_pose, rb,
                           sample_rate=rate_hz, tool_index=tool_index,
                           reference_rate=ex.rate_hz)
    n = int(frames.seq.shape[0])
    if n == 0:
        raise ValueError("no stored frames to score")
    trackers = frames.poses.shape[1]
    bits = np.int32(1) << np.arange(trackers, dtype=np.int32)
    valid = (frames.valid_mask[:, None] & bits[None, :]) != 0
    breaks = np.flatnonzero(np.diff(frames.seq) != 1) + 1
    period = 1.0 / rate_hz
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, n], strict=True):
        scorer.feed(float(frames.rig_time[a]), period, frames.poses[a:b], valid[a:b])
    res = scorer.finish()
    result = result_dict(res)
    text = canonical_json(result)
    dsha = data_sha256(frames)
    rsha = rubric_sha256(rubric)
    kv = kernel_version()
    msha = sha256_text(f"{dsha}|{rsha}|{kv}|{rate_hz!r}|{tool_index}")
    return Mark(seq_lo=int(frames.seq[0]), seq_hi=int(frames.seq[-1]), frames=n,
                data_sha256=dsha, rubric_id=rb.rubric_id, rubric_version=int(rb.version),
                rubric_sha256=rsha, kernel_version=kv, rate_hz=float(rate_hz),
                tool_index=tool_index, mark_sha256=msha, score=float(res.score),
                passed=bool(res.passed), result=json.loads(text), result_text=text)


def difference(official: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """What changed between two result documents: score, components, per-metric scores."""
    def num(x: Any) -> float | None:
        return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None

    out: dict[str, Any] = {}
    a, b = num(official.get("score")), num(other.get("score"))
    out["score"] = {"official": a, "appeal": b,
                    "delta": None if a is None or b is None else round(b - a, 6)}
    out["passed"] = {"official": official.get("passed"), "appeal": other.get("passed")}
    out["level"] = {"official": official.get("level_name"), "appeal": other.get("level_name")}
    comps: dict[str, Any] = {}
    for k, va in (official.get("components") or {}).items():
        x, y = num(va), num((other.get("components") or {}).get(k))
        if x is not None and y is not None and x != y:
            comps[k] = {"official": x, "appeal": y, "delta": round(y - x, 6)}
    out["components"] = comps
    mets: dict[str, Any] = {}
    ob = {m["name"]: m for m in official.get("metrics") or []}
    for m in other.get("metrics") or []:
        o = ob.get(m["name"])
        if o is None:
            continue
        changed = {k: {"official": o.get(k), "appeal": m.get(k)}
                   for k in ("fraction_in_window", "min", "max", "ideal", "weight")
                   if o.get(k) != m.get(k)}
        if changed:
            mets[m["name"]] = changed
    out["metrics"] = mets
    return out
