"""Runs inside a private network namespace (only ``lo``): an outlet process + `LslRig`.

Prints one JSON object with what the bridge delivered; ``test_lsl.py`` asserts on it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from devices.driver import SessionContext, check_block
from devices.lsl import LslRig


def main() -> None:
    work = Path(sys.argv[1])
    name = f"labctl-test-{uuid.uuid4().hex[:8]}"
    stamps_file = work / "stamps.json"
    here = Path(__file__).parent
    out = subprocess.Popen([sys.executable, str(here / "lsl_outlet.py"), "--name", name,
                            "--seconds", "5", "--stamps", str(stamps_file)],
                           stdout=subprocess.PIPE, text=True)
    assert out.stdout is not None
    out.stdout.readline()  # "ready"
    rig = LslRig(name=name, resolve_timeout=10.0)
    info = rig.describe()
    rig.start(SessionContext(str(uuid.uuid4()), "x", "t"), {}, {})
    t_start = rig.clock()
    blocks = []
    while rig.clock() - t_start < 2.0:
        for b in rig.read(rig.clock()):
            check_block(b, info)
            blocks.append(b)
        time.sleep(0.02)
    rig.stop()
    out.wait(30)
    stamps = np.asarray(json.loads(stamps_file.read_text()))
    t = np.concatenate([b.rig_time_first + b.period * np.arange(b.count) for b in blocks])
    poses = np.concatenate([b.poses for b in blocks]).astype(np.float64)
    valid = np.concatenate([b.valid for b in blocks])
    k = np.rint(poses[:, 0, 0] / 0.5).astype(int)
    expect_t = stamps[k] + rig.offset
    a = 0.3 + 0.001 * k
    result = {
        "config": os.environ.get("LSLAPICFG"),
        "interfaces": sorted(name for _i, name in socket.if_nameindex()),
        "trackers": [list(x) for x in info.trackers],
        "rate_hz": info.rate_hz,
        "samples": int(t.shape[0]),
        "blocks": len(blocks),
        "k_contiguous": bool(np.all(np.diff(k) == 1)),
        "offset": rig.offset,
        "max_time_error_s": float(np.max(np.abs(t - expect_t))),
        "max_age_s": float(np.max(t_start + 2.1 - t)),
        "torch_pos_error_mm": float(np.max(np.abs(poses[:, 0, :3]
                                                  - np.stack([0.5 * k, 250.0 + 0 * k,
                                                              1100.0 + 0 * k], -1)))),
        "torch_quat_error": float(np.max(np.abs(poses[:, 0, 3:] - np.stack(
            [0 * a, 0 * a, np.sin(a / 2), np.cos(a / 2)], -1)))),
        "hmd_pos_error_mm": float(np.nanmax(np.abs(poses[valid[:, 1], 1, 0]
                                                   - 10.0 * k[valid[:, 1]]))),
        "hmd_invalid_ok": bool(np.array_equal(~valid[:, 1], k % 10 == 0)),
        "hmd_invalid_nan": bool(np.isnan(poses[~valid[:, 1], 1]).all()),
        "gaps": rig.gaps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
