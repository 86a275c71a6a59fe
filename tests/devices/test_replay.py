"""Recording → file → replay reproduces every sample and its timing (gaps included)."""

from __future__ import annotations

import csv
import math
import uuid
from pathlib import Path

import numpy as np
import pytest

from devices.driver import SampleBlock, SessionContext, check_block, check_driver
from devices.recording import Recording, read_export, record_driver
from devices.replay import ReplayRig
from devices.sim.rig import SimulatedRig
from devices.sim.skill import skill_by_name
from devices.sim.trainee import LOAD_TEST_TRACKERS
from lab_controller.exercises import scene_for


class FakeClock:
    def __init__(self, t: float = 50.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# A fixed session id: the simulated rig seeds its trainee (and its dropouts) from it, and a
# random one left the 4 s recording without any dropout now and then (a flaky check below).
_SESSION_ID = str(uuid.UUID("6b1f6f0e-2f59-4c4e-9a55-1f3d0c9f2a01"))


def _session() -> SessionContext:
    return SessionContext(_SESSION_ID, "butt_weave_flat", "t-7")


def _recorded(seconds: float = 4.0) -> Recording:
    """A novice with frequent dropouts, recorded live on a fake clock; two blocks removed
    to make real gaps."""
    clock = FakeClock()
    skill = skill_by_name("novice", dropout_per_min=20.0, rate_jitter=0.01)
    rig = SimulatedRig(skill, trackers=LOAD_TEST_TRACKERS, seed=8, clock=clock)
    scene = scene_for("butt_weave_flat")
    rig.start(_session(), scene, {})
    blocks: list[SampleBlock] = []
    while clock.t < 50.0 + seconds:
        clock.t += 0.011
        blocks.extend(rig.read(rig.clock()))
    q = len(blocks) // 4
    del blocks[3 * q]
    del blocks[q:q + 3]
    return Recording.from_blocks(rig.describe(), blocks, rig_id="sim-01", scene=scene,
                                 exercise_id="butt_weave_flat")


def _drain(rig: ReplayRig, clock: FakeClock | None = None, step: float = 0.01
           ) -> list[SampleBlock]:
    out: list[SampleBlock] = []
    for _ in range(100_000):
        if rig.finished:
            break
        if clock is not None:
            clock.t += step
        out.extend(rig.read(rig.clock()))
    return out


def _same_samples(rec: Recording, blocks: list[SampleBlock]) -> None:
    poses = np.concatenate([b.poses for b in blocks])
    valid = np.concatenate([b.valid for b in blocks])
    analog = np.concatenate([b.analog for b in blocks])
    np.testing.assert_array_equal(poses, rec.poses)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(valid, rec.valid)
    np.testing.assert_array_equal(analog, rec.analog)


def test_file_round_trip_and_fast_replay_exact(tmp_path: Path) -> None:
    rec = _recorded()
    assert rec.gaps() == 2
    assert (~rec.valid).any()
    path = rec.save(tmp_path / "session.npz")
    back = Recording.load(path)
    assert back.meta["rig_id"] == "sim-01" and back.meta["gaps"] == 2
    assert back.meta["trackers"][0] == {"name": "tool", "role": "tool"}
    np.testing.assert_array_equal(back.t, rec.t)
    np.testing.assert_array_equal(back.blocks, rec.blocks)

    rig = ReplayRig(path, speed=math.inf)
    info = check_driver(rig)
    assert info.rate_hz == 120.0 and info.analog == ("trigger",)
    rig.start(_session(), {}, {})
    out = _drain(rig)
    for b in out:
        check_block(b, info)
    _same_samples(back, out)
    # identical block structure: same periods, same counts, same original first times
    assert [b.period for b in out] == list(back.blocks[:, 2])
    assert [b.meta["recorded_rig_time_first"] for b in out] == list(back.blocks[:, 1])
    # one constant shift; every interval (gaps included) preserved
    firsts = np.array([b.rig_time_first for b in out])
    np.testing.assert_allclose(np.diff(firsts), np.diff(back.blocks[:, 1]), rtol=0, atol=1e-9)
    assert rig.clock() == pytest.approx(out[-1].rig_time_first
                                        + (out[-1].count - 1) * out[-1].period)


def test_real_time_replay_paces_samples() -> None:
    rec = _recorded(2.0)
    clock = FakeClock(1000.0)
    rig = ReplayRig(rec, speed=1.0, clock=clock)
    rig.start(_session(), {}, {})
    t_begin = clock.t
    got: list[SampleBlock] = []
    for _ in range(400):
        clock.t += 0.01
        for b in rig.read(rig.clock()):
            last = b.rig_time_first + (b.count - 1) * b.period
            assert last <= clock.t + 1e-9  # never a sample from the future
            got.append(b)
        if rig.finished:
            break
    assert rig.finished
    _same_samples(rec, got)
    duration = rec.t[-1] - rec.t[0]
    assert clock.t - t_begin == pytest.approx(duration, abs=0.03)


def test_double_speed_halves_periods() -> None:
    rec = _recorded(1.0)
    rig = ReplayRig(rec, speed=2.0, clock=FakeClock())
    assert rig.describe().rate_hz == 240.0
    rig.start(_session(), {}, {})
    clock = rig._host_clock
    assert isinstance(clock, FakeClock)
    out = _drain(rig, clock, 0.005)
    assert [b.period for b in out] == pytest.approx(list(rec.blocks[:, 2] / 2.0))


def _write_export(rec: Recording, path: Path) -> None:
    """Write ``rec`` as the telemetry ``pose_samples`` view exports it (metres, qw first)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "rig_time", "session_id", "rig_id", "seq", "tracker", "px", "py",
                    "pz", "qw", "qx", "qy", "qz", "valid", "analog_trigger"])
        seq = 0
        for i in range(rec.n):
            if i and rec.t[i] - rec.t[i - 1] > 1.5 / 120.0:
                seq += 1  # a lost block left a hole in the sequence numbers
            for j in range(rec.valid.shape[1]):
                p = rec.poses[i, j].astype(np.float64)
                w.writerow(["", repr(float(rec.t[i])), "s-1", "sim-01", seq, j,
                            *(repr(float(x) / 1000.0) for x in p[:3]),
                            *(repr(float(x)) for x in (p[6], p[3], p[4], p[5])),
                            "t" if rec.valid[i, j] else "f", float(rec.analog[i, 0])])
            seq += 1


def test_replay_from_database_export(tmp_path: Path) -> None:
    rec = _recorded(1.5)
    path = tmp_path / "export.csv"
    _write_export(rec, path)
    back = read_export(path, rate_hz=120.0, position_unit="m",
                       tracker_names=[d["name"] for d in rec.meta["trackers"]])
    assert back.meta["rig_id"] == "sim-01" and back.meta["analog"] == ["trigger"]
    np.testing.assert_array_equal(back.valid, rec.valid)
    np.testing.assert_allclose(back.poses, rec.poses, rtol=0, atol=1e-4)
    np.testing.assert_allclose(back.analog, rec.analog)
    assert back.gaps() == rec.gaps() == 2
    rig = ReplayRig(back, speed=math.inf)
    rig.start(_session(), {}, {})
    out = _drain(rig)
    t = np.concatenate([b.meta["recorded_rig_time_first"] + b.meta["recorded_period"]
                        * np.arange(b.count) for b in out])
    # A CSV export's rig times come back through a fitted period per contiguous run, so they
    # match to microseconds, not to the last bit (the NPZ recording test checks exactness).
    np.testing.assert_allclose(t, rec.t, rtol=0, atol=1e-5)


def test_parquet_export(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow is the parquet extra")
    import pyarrow.parquet as pq

    rec = _recorded(0.5)
    n, nt = rec.valid.shape
    seq = np.repeat(np.arange(n), nt)
    trk = np.tile(np.arange(nt), n)
    flat = rec.poses.reshape(-1, 7).astype(np.float64)
    table = pa.table({"rig_time": np.repeat(rec.t, nt), "seq": seq, "tracker": trk,
                      "px": flat[:, 0] / 1e3, "py": flat[:, 1] / 1e3, "pz": flat[:, 2] / 1e3,
                      "qw": flat[:, 6], "qx": flat[:, 3], "qy": flat[:, 4], "qz": flat[:, 5],
                      "valid": rec.valid.reshape(-1)})
    pq.write_table(table, tmp_path / "e.parquet")
    back = read_export(tmp_path / "e.parquet", position_unit="m")
    np.testing.assert_allclose(back.poses, rec.poses, rtol=0, atol=1e-4)
    np.testing.assert_allclose(back.t, rec.t, rtol=0, atol=0)


def _frame_columns(rec: Recording) -> dict[str, np.ndarray]:
    """``rec`` as `telemetry.export.export_session` lays out a session's pose file: one row
    per frame, column names from `pose_column_names`, values as stored (the wire's mm)."""
    from telemetry.export import pose_column_names

    n, nt = rec.valid.shape
    names = pose_column_names(nt, rec.analog.shape[1])
    seq = np.arange(n) + np.concatenate([[0], np.cumsum(np.diff(rec.t) > 1.5 / 120.0)])
    mask = (rec.valid.astype(np.int64) << np.arange(nt)).sum(axis=1)
    cols: dict[str, np.ndarray] = {"time": np.zeros(n), "rig_time": rec.t, "seq": seq,
                                   "valid_mask": mask}
    k = 4
    for i in range(nt):
        for c in range(7):
            cols[names[k]] = rec.poses[:, i, c]
            k += 1
    for j in range(rec.analog.shape[1]):
        cols[names[k]] = rec.analog[:, j]
        k += 1
    assert list(cols) == names
    return cols


def test_telemetry_frame_export_csv_and_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow is the parquet extra")
    import pyarrow.parquet as pq

    rec = _recorded(1.0)
    cols = _frame_columns(rec)
    csv_path = tmp_path / "session-x-poses.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for r in range(rec.n):
            # PostgreSQL writes float4 in its shortest exact form, NaN as "NaN"
            w.writerow([repr(float(v[r])) if v.dtype.kind == "f" else int(v[r])
                        for v in cols.values()])
    table = pa.table(cols).replace_schema_metadata({"session_id": "s-9", "rig_id": "sim-01"})
    pq.write_table(table, tmp_path / "session-x-poses.parquet")
    names = [d["name"] for d in rec.meta["trackers"]]
    for path in (csv_path, tmp_path / "session-x-poses.parquet"):
        back = read_export(path, rate_hz=120.0, tracker_names=names, analog_names=["trigger"])
        np.testing.assert_array_equal(back.valid, rec.valid)
        np.testing.assert_array_equal(back.poses, rec.poses)  # bit-identical, NaN where lost
        np.testing.assert_array_equal(back.analog, rec.analog)
        np.testing.assert_array_equal(back.t, rec.t)
        assert back.gaps() == rec.gaps() == 2 and back.meta["analog"] == ["trigger"]
        rig = ReplayRig(back, speed=math.inf)
        rig.start(_session(), {}, {})
        out = _drain(rig)
        t = np.concatenate([b.meta["recorded_rig_time_first"] + b.meta["recorded_period"]
                            * np.arange(b.count) for b in out])
        np.testing.assert_allclose(t, rec.t, rtol=0, atol=1e-9)
    assert read_export(tmp_path / "session-x-poses.parquet").meta["rig_id"] == "sim-01"


def test_record_driver_live(tmp_path: Path) -> None:
    rig = SimulatedRig("expert", seed=1)
    rec = record_driver(rig, _session(), scene_for("fillet_t_joint_h"), {}, 0.4)
    assert 30 <= rec.n <= 60
    assert rec.meta["exercise_id"] == "butt_weave_flat"
    Recording.load(rec.save(tmp_path / "live.npz"))


def test_replay_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.npz"
    np.savez(bad, meta=np.array('{"format": "something-else"}'))
    with pytest.raises(ValueError, match="not a labctl-recording"):
        Recording.load(bad)
    with pytest.raises(ValueError, match="speed"):
        ReplayRig(_recorded(0.2), speed=0.0)
