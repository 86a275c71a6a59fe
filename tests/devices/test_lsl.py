"""LSL bridge: channel mapping by MoCap metadata, time offsets, validity, and a live outlet in
another process — confined to loopback (lsl_api.cfg + a private network namespace)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices.lsl import LslUnavailable, channel_map, loopback_config, to_blocks

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _meta(obj: str, unit: str, conf: bool = False) -> list[dict[str, str]]:
    kinds = ["PositionX", "PositionY", "PositionZ", "OrientationA", "OrientationB",
             "OrientationC", "OrientationD"]
    out = [{"label": f"{obj}{k}", "object": obj, "type": k,
            "unit": unit if k.startswith("Position") else ""} for k in kinds]
    if conf:
        out.append({"label": f"{obj}C", "object": obj, "type": "Confidence", "unit": ""})
    return out


def test_channel_map_from_metadata() -> None:
    chans = _meta("HMD", "millimeters", conf=True) + _meta("Torch", "meters")
    m = channel_map(chans)
    assert m.trackers == (("Torch", "tool"), ("HMD", "headset"))
    # torch channels 8..14: x y z, then B C D (qx qy qz), then A (qw) last
    assert m.index[0].tolist() == [8, 9, 10, 12, 13, 14, 11]
    assert m.scale.tolist() == [1000.0, 1.0]
    assert m.confidence.tolist() == [-1, 7]
    assert channel_map(chans, roles={"HMD": "other"}).trackers[1] == ("HMD", "other")
    with pytest.raises(ValueError, match="unknown unit"):
        channel_map(_meta("Torch", "furlongs"))
    with pytest.raises(ValueError, match="no object"):
        channel_map(_meta("Torch", "meters")[:5])


def test_to_blocks_keeps_timing_and_splits_at_gaps() -> None:
    t = np.concatenate([100 + np.arange(10) / 120, 100.2 + np.arange(5) / 120])
    poses = np.zeros((15, 1, 7), np.float32)
    blocks = to_blocks(t, poses, np.ones((15, 1), bool), 1 / 120)
    assert [b.count for b in blocks] == [10, 5]
    rebuilt = np.concatenate([b.rig_time_first + b.period * np.arange(b.count) for b in blocks])
    np.testing.assert_allclose(rebuilt, t, atol=1e-9)


def test_convert_applies_offset_units_and_confidence() -> None:
    """A second machine with its own LSL clock cannot run here: the inlet's measured offset is
    set by hand (12.5 s); the conversion itself is the real code."""
    from devices.lsl import LslRig

    rig = object.__new__(LslRig)
    rig.map = channel_map(_meta("Torch", "meters") + _meta("HMD", "centimeters", conf=True))
    rig.offset = 12.5
    row = [0.1, 0.2, 0.3, 1.0, 0.0, 0.0, 0.0, 10.0, 20.0, 30.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    data = np.array([row, row, [*row[:7], np.nan, *row[8:14], 1.0]])
    data[:, 14] = [1.0, 0.0, 1.0]
    t, poses, valid = rig.convert(data, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(t, [13.5, 14.5, 15.5])
    np.testing.assert_allclose(poses[0, 0], [100, 200, 300, 0, 0, 0, 1], atol=1e-4)
    np.testing.assert_allclose(poses[0, 1], [100, 200, 300, 0, 0, 0, 1], atol=1e-4)  # cm → mm
    assert valid.tolist() == [[True, True], [True, False], [True, False]]
    assert np.isnan(poses[1, 1]).all() and np.isnan(poses[2, 1]).all()


def test_missing_pylsl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pylsl", None)  # what an install without pylsl looks like
    from devices.lsl import LslRig

    with pytest.raises(LslUnavailable, match="pylsl is not installed"):
        LslRig(name="x")


def _netns_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare -n)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare(1) and ip(8)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -n refused: {probe.stderr.decode().strip()}"
    return None


@pytest.mark.netns
def test_live_outlet_through_bridge_on_loopback_only(tmp_path: Path) -> None:
    why = _netns_available()
    if why is not None:
        pytest.skip(f"LSL live test not run: {why}; LSL traffic may only run on loopback")
    cfg = loopback_config(tmp_path / "lsl_api.cfg")
    env = dict(os.environ, LSLAPICFG=str(cfg), PYTHONPATH=str(ROOT))
    script = (f"ip link set lo up && exec {sys.executable} "
              f"{HERE / 'lsl_netns_check.py'} {tmp_path}")
    proc = subprocess.run(["unshare", "-n", "--", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["interfaces"] == ["lo"]  # nothing but loopback existed
    assert r["config"] == str(cfg)
    assert r["trackers"] == [["Torch", "tool"], ["HMD", "headset"]]
    assert r["rate_hz"] == 120.0
    assert 200 <= r["samples"] <= 260  # 2 s at 120 Hz
    assert r["k_contiguous"] and r["gaps"] == 0
    assert r["torch_pos_error_mm"] < 1e-3 and r["hmd_pos_error_mm"] < 1e-3
    assert r["torch_quat_error"] < 1e-6
    assert r["hmd_invalid_ok"] and r["hmd_invalid_nan"]
    # same machine: LSL's offset is ~0; each sample = its outlet stamp + that offset
    assert abs(r["offset"]) < 0.01
    assert r["max_time_error_s"] < 1e-6
    assert r["max_age_s"] < 2.5
