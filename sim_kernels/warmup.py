"""Compile every kernel signature the hot paths use, once, at start-up.

With ``cache=True`` the first process compiles and writes the cache, later processes load it;
either way no request pays for compilation after :func:`warmup` returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from sim_kernels import dtw, motion, process, session, streaming, windows
from sim_kernels.rubric import Rubric


def _poses(n: int) -> NDArray[np.float64]:
    t = np.arange(n) / 120.0
    p = np.zeros((n, 7))
    p[:, 0] = 6.0 * t
    p[:, 2] = 150.0
    p[:, 3] = 1.0  # 180° about x: tool +Z points down
    return p


def warmup() -> None:
    """Run every public kernel on tiny inputs (all dtypes/ranks used by the controller)."""
    rng = np.random.default_rng(0)
    for d in (1, 3):
        x = rng.normal(size=(9, d))
        y = rng.normal(size=(11, d))
        dtw.dtw_distance(x, y)
        dtw.dtw_distance(x, y, window=2, max_dist=10.0)
        dtw.dtw_open_end(x, y, window=3)
        dtw.dtw_path(x, y)
        dtw.lb_keogh(x, y, window=2)
        dtw.dtw_batch(x, np.stack([y, y]), window=3, max_dist=5.0)
        streaming.StreamingDTW(y, window=4).update(x)
    v = np.abs(np.sin(np.linspace(0.0, 3.0, 50)))
    motion.sparc(v, 100.0)
    motion.ldlj(v, 100.0)
    motion.motion_quality(np.cumsum(rng.normal(size=(50, 3)), axis=0), 100.0)
    motion.resample(np.arange(10) / 100.0, rng.normal(size=(10, 2)), None, 100.0)
    obs = rng.normal(size=(20, 2))
    windows.window_stats(obs, [-1.0, -1.0], [1.0, 1.0], 5)
    windows.CueTracker([-1.0, -1.0], [1.0, 1.0], [0.1, 0.1], 2, 2).update(obs)
    p = _poses(40)
    process.weave(rng.normal(size=40), 120.0, 0.2)
    process.lagged_speed(p[:, :3], 120.0, 0.1)
    weld = Rubric(rubric_id="warmup-weld", version=1, exercise="warmup", process="welding",
                  metrics={n: {"ideal": 0.0, "min": -1e9, "max": 1e9}
                           for n in ("work_angle", "travel_angle", "ctwd", "travel_speed",
                                     "aim_offset", "weave_amplitude", "weave_period")})
    spray = Rubric(rubric_id="warmup-spray", version=1, exercise="warmup", process="spray",
                   metrics={n: {"ideal": 0.0, "min": -1e9, "max": 1e9}
                            for n in ("gun_distance", "gun_angle", "gun_speed",
                                      "pass_overlap")})
    geoms: tuple[dict[str, Any], ...] = (
        {"line_start": [0, 0, 0], "line_end": [100, 0, 0], "normal": [0, 0, 1],
         "tip_offset": [0, 0, 10]},
        {"point": [0, 0, 0], "normal": [0, 0, 1], "pass_direction": [1, 0, 0],
         "fan_width_mm": 200.0},
    )
    valid = np.ones(40, np.bool_)
    valid[5:7] = False
    for rub, geo in zip((weld, spray), geoms, strict=True):
        model = session.ExerciseModel.build(rub, geo, 120.0, p)
        sm = session.SessionMetrics(model)
        sm.feed(p[:20].astype(np.float32), valid[:20])
        sm.feed(p[20:30], valid[20:30])
        # the controller's chunks: (k, trackers, 7) float32 and (k, trackers) bool, writable
        # or read-only (decoded from a received frame), each its own compiled specialisation
        chunk = np.repeat(p[30:, None, :], 2, axis=1).astype(np.float32)
        ok = np.repeat(valid[30:, None], 2, axis=1)
        sm.feed_chunk(chunk[:5], ok[:5], 1, 0.25, 1 / 120.0)
        ro_chunk = np.frombuffer(chunk[5:].tobytes(), np.float32).reshape(chunk[5:].shape)
        ro_ok = np.frombuffer(ok[5:].tobytes(), np.bool_).reshape(ok[5:].shape)
        sm.feed_chunk(ro_chunk[:2], ro_ok[:2], 1, 0.3, 1 / 120.0)
        sm.feed_chunk(ro_chunk[2:], ok[7:], 1, 0.35, 1 / 120.0)  # as a scoring worker gets them
        sm.finish()
        session.rescore_sessions(model, [(p, valid)])
