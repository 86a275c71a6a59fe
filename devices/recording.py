"""Self-describing recordings of a rig's sample stream (NPZ + JSON metadata).

One file holds every sample of one stream exactly as the driver produced it: the block
structure (first rig time and period of each block) is kept, so a replay re-emits the same
blocks with the same timing and the same gaps. Layout (all arrays little-endian, no pickle):

=============  ==================  ==========================================================
``t``          float64 (n,)        rig clock of every sample, s (= first + i * period)
``poses``      float32 (n, T, 7)   x, y, z mm; qx, qy, qz, qw; NaN where not valid
``analog``     float32 (n, A)      analog channels (e.g. trigger)
``valid``      bool (n, T)         False = tracking lost
``blocks``     float64 (B, 3)      per block: first sample index, rig_time_first, period
``meta``       unicode scalar      JSON: format, version, rig, trackers, rate, clock, exercise…
=============  ==================  ==========================================================

Besides our own files, :func:`read_export` reads a telemetry session export (CSV or Parquet,
``telemetry.export`` frame rows, or the ``pose_samples`` view's tracker rows) so stored
sessions can be replayed too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.driver import DriverInfo, PoseSource, SampleBlock, SessionContext, check_driver

FORMAT = "labctl-recording"
VERSION = 1


@dataclass
class Recording:
    """Samples of one stream plus what they mean (see module docstring for the arrays)."""

    meta: dict[str, Any]
    t: NDArray[np.float64]
    poses: NDArray[np.float32]
    analog: NDArray[np.float32]
    valid: NDArray[np.bool_]
    blocks: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))

    # --- construction ---------------------------------------------------------------
    @classmethod
    def from_blocks(cls, info: DriverInfo, blocks: Sequence[SampleBlock],
                    **meta: Any) -> Recording:
        """Collect driver blocks (in order) into a recording; ``meta`` adds/overrides keys."""
        n_t, n_a = len(info.trackers), len(info.analog)
        counts = [b.count for b in blocks]
        n = int(sum(counts))
        t = np.empty(n)
        poses = np.empty((n, n_t, 7), np.float32)
        analog = np.empty((n, n_a), np.float32)
        valid = np.empty((n, n_t), bool)
        table = np.empty((len(blocks), 3))
        i = 0
        for k, b in enumerate(blocks):
            m = b.count
            t[i:i + m] = b.rig_time_first + b.period * np.arange(m, dtype=np.float64)
            poses[i:i + m] = b.poses
            analog[i:i + m] = b.analog
            valid[i:i + m] = b.valid
            table[k] = (i, b.rig_time_first, b.period)
            i += m
        poses[~valid] = np.nan
        base = {
            "format": FORMAT, "version": VERSION,
            "trackers": [{"name": nm, "role": r} for nm, r in info.trackers],
            "analog": list(info.analog), "rate_hz": info.rate_hz,
            "clock": {"kind": "rig", "unit": "s",
                      "note": "the rig's own clock; offset to the controller is not applied"},
            "created_unix": time.time(), "n_samples": n,
        }
        base.update(meta)
        return cls(base, t, poses, analog, valid, table)

    # --- derived ----------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.t.shape[0])

    @property
    def info(self) -> DriverInfo:
        """The stream's declaration, as a replaying driver announces it."""
        tr = tuple((str(d["name"]), str(d["role"])) for d in self.meta["trackers"])
        return DriverInfo(trackers=tr, rate_hz=float(self.meta["rate_hz"]),
                          analog=tuple(self.meta.get("analog", ())))

    def iter_blocks(self) -> Iterator[SampleBlock]:
        """The recorded blocks, in order, with their original rig times."""
        starts = self.blocks[:, 0].astype(np.int64)
        ends = np.append(starts[1:], self.n)
        for (lo, hi), row in zip(zip(starts, ends, strict=True), self.blocks, strict=True):
            yield SampleBlock(float(row[1]), float(row[2]), self.poses[lo:hi],
                              self.analog[lo:hi], self.valid[lo:hi])

    def gaps(self, factor: float = 1.5) -> int:
        """Number of times consecutive samples are further apart than ``factor`` periods."""
        if self.n < 2:
            return 0
        nominal = 1.0 / float(self.meta["rate_hz"])
        return int(np.count_nonzero(np.diff(self.t) > factor * nominal))

    # --- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the NPZ file (compressed); returns the path."""
        path = Path(path)
        meta = dict(self.meta, n_samples=self.n, gaps=self.gaps())
        with path.open("wb") as fh:
            np.savez_compressed(fh, t=self.t, poses=self.poses, analog=self.analog,
                                valid=self.valid, blocks=self.blocks,
                                meta=np.array(json.dumps(meta, sort_keys=True)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        """Read a file written by :meth:`save` (checks format and version)."""
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} file")
            if int(meta.get("version", 0)) > VERSION:
                raise ValueError(f"{path}: recording version {meta['version']} is newer than "
                                 f"this reader ({VERSION})")
            return cls(meta, np.asarray(z["t"], np.float64),
                       np.asarray(z["poses"], np.float32),
                       np.asarray(z["analog"], np.float32), np.asarray(z["valid"], bool),
                       np.asarray(z["blocks"], np.float64))


def _blocks_from_times(t: NDArray[np.float64], seq: NDArray[np.int64],
                       nominal: float) -> NDArray[np.float64]:
    """Split a per-sample time series into regularly spaced runs (the protocol's chunks).

    A new block starts at a sequence gap or where the sample spacing changes by more than
    1 µs (float64 rig times of one chunk are ``first + i * period`` exactly, so their
    spacing is constant to ~1e-12 s).
    """
    n = t.shape[0]
    if n == 0:
        return np.zeros((0, 3))
    d = np.diff(t)
    cut = np.zeros(n, dtype=bool)
    cut[0] = True
    if n > 1:
        cut[1:] |= np.diff(seq) != 1
        dd = np.abs(np.diff(d))
        # sample i+1 starts a new run if spacing before it differs from spacing after i-1
        brk = np.concatenate([[False], dd > 1e-6])
        cut[1:] |= brk
    rows = []
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], n)
    for lo, hi in zip(starts, ends, strict=True):
        period = (t[hi - 1] - t[lo]) / (hi - 1 - lo) if hi - lo > 1 else nominal
        rows.append((lo, t[lo], period))
    return np.asarray(rows, dtype=np.float64)


#: Position units an export may use, to mm. The pipeline stores the wire's values unchanged
#: (mm), so "mm" is the default; pass ``position_unit="m"`` for data converted to metres.
_UNIT_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def read_export(path: str | Path, *, rate_hz: float | None = None,
                tracker_names: Sequence[str] | None = None,
                roles: Sequence[str] | None = None,
                analog_names: Sequence[str] | None = None,
                position_unit: str = "mm") -> Recording:
    """Read a telemetry session export (CSV or Parquet) into a recording.

    Two layouts are understood:

    * **frame rows** (``telemetry.export.export_session``'s ``-poses`` file): ``rig_time``,
      ``seq``, ``valid_mask`` (bit i = tracker i valid), ``t<i>_<px|py|pz|qx|qy|qz|qw>`` per
      tracker, ``a<j>`` per analog channel;
    * **tracker rows** (the ``pose_samples`` view): ``rig_time``, ``seq``, ``tracker``,
      ``px, py, pz, qw, qx, qy, qz``, ``valid``, optional ``analog_<name>``.

    Tracker names/roles and analog names are not in the export: pass them, or get
    ``tool``/``tracker<i>`` (tracker 0 is the tool) and ``a<j>``. Sequence gaps and the
    per-sample rig times become the recording's blocks (see `_blocks_from_times`).
    """
    path = Path(path)
    if position_unit not in _UNIT_MM:
        raise ValueError(f"position_unit must be one of {sorted(_UNIT_MM)}")
    scale = _UNIT_MM[position_unit]
    cols, file_meta = _read_table(path)
    if "valid_mask" in cols:
        seqs = np.asarray(cols["seq"], dtype=np.int64)
        order = np.argsort(seqs, kind="stable")
        seqs = seqs[order]
        n = seqs.shape[0]
        n_t = sum(1 for c in cols if c.startswith("t") and c.endswith("_px"))
        t = np.asarray(cols["rig_time"], dtype=np.float64)[order]
        poses = np.empty((n, n_t, 7), np.float32)
        for i in range(n_t):
            for k, comp in enumerate(("px", "py", "pz", "qx", "qy", "qz", "qw")):
                poses[:, i, k] = np.asarray(cols[f"t{i}_{comp}"], np.float64)[order]
        mask = np.asarray(cols["valid_mask"], np.int64)[order]
        valid = ((mask[:, None] >> np.arange(n_t)[None, :]) & 1).astype(bool)
        n_a = sum(1 for c in cols if c[:1] == "a" and c[1:].isdigit())
        analog = np.empty((n, n_a), np.float32)
        for j in range(n_a):
            analog[:, j] = np.asarray(cols[f"a{j}"], np.float64)[order]
        a_names = list(analog_names) if analog_names else [f"a{j}" for j in range(n_a)]
    else:
        seq_all = np.asarray(cols["seq"], dtype=np.int64)
        trk = np.asarray(cols["tracker"], dtype=np.int64)
        seqs = np.unique(seq_all)
        n_t = int(trk.max()) + 1 if trk.size else 0
        row_of = np.searchsorted(seqs, seq_all)
        n = seqs.shape[0]
        t = np.full(n, np.nan)
        t[row_of] = np.asarray(cols["rig_time"], dtype=np.float64)
        poses = np.full((n, n_t, 7), np.nan, np.float32)
        valid = np.zeros((n, n_t), bool)
        for k, comp in enumerate(("px", "py", "pz", "qx", "qy", "qz", "qw")):
            poses[row_of, trk, k] = np.asarray(cols[comp], np.float64)
        valid[row_of, trk] = _as_bool(cols["valid"])
        found = sorted(c[len("analog_"):] for c in cols if c.startswith("analog_"))
        analog = np.zeros((n, len(found)), np.float32)
        for j, a in enumerate(found):
            analog[row_of, j] = np.asarray(cols["analog_" + a], np.float64)
        a_names = list(analog_names) if analog_names else found
    if scale != 1.0:
        poses[:, :, :3] *= np.float32(scale)
    poses[~valid] = np.nan
    d = np.diff(t)
    nominal = 1.0 / rate_hz if rate_hz else (float(np.median(d)) if d.size else 1.0 / 120.0)
    names = list(tracker_names) if tracker_names else [
        "tool" if i == 0 else f"tracker{i}" for i in range(n_t)]
    rl = list(roles) if roles else ["tool" if i == 0 else "other" for i in range(n_t)]
    meta: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "source": f"export:{path.name}",
        "trackers": [{"name": a, "role": b} for a, b in zip(names, rl, strict=True)],
        "analog": a_names, "rate_hz": 1.0 / nominal,
        "clock": {"kind": "rig", "unit": "s"},
        "first_seq": int(seqs[0]) if n else 0,
    }
    meta.update(file_meta)
    for key in ("session_id", "rig_id"):
        if key in cols and len(cols[key]):
            meta[key] = str(cols[key][0])
    return Recording(meta, t, poses, analog, valid, _blocks_from_times(t, seqs, nominal))


def _as_bool(values: Any) -> NDArray[np.bool_]:
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr.astype(bool)
    if arr.dtype.kind in "iuf":
        return np.asarray(arr != 0, dtype=bool)
    return np.asarray(np.isin(np.char.lower(arr.astype(str)), ["t", "true", "1"]), dtype=bool)


def _read_table(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Columns of a CSV or Parquet file, plus Parquet schema metadata (session_id, rig_id)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - pyarrow is a declared extra
            raise RuntimeError("reading Parquet needs pyarrow (pip install '.[parquet]')") from exc
        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()
                if k in (b"session_id", b"rig_id") and v}
        return ({name: table.column(name).to_numpy(zero_copy_only=False)
                 for name in table.column_names}, meta)
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: empty export")
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}, {}


def record_driver(driver: PoseSource, session: SessionContext, scene: dict[str, Any],
                  params: dict[str, Any], seconds: float, *, poll_s: float = 0.01,
                  sleep: Callable[[float], None] = time.sleep,
                  meta: dict[str, Any] | None = None) -> Recording:
    """Run ``driver`` live for up to ``seconds`` (or until it finishes) and record it."""
    info = check_driver(driver)
    driver.start(session, scene, params)
    blocks: list[SampleBlock] = []
    t_end = driver.clock() + seconds
    try:
        while not driver.finished:
            now = driver.clock()
            blocks.extend(driver.read(now))
            if now >= t_end:
                break
            sleep(poll_s)
    finally:
        driver.stop()
    extra = {"session_id": session.session_id, "exercise_id": session.exercise_id,
             "trainee": session.trainee, "scene": scene, "params": params}
    extra.update(meta or {})
    return Recording.from_blocks(info, blocks, **extra)

