"""An LSL MoCap outlet for the bridge test (run as its own process, inside the test's netns).

Streams two rigid bodies with XDF MoCap metadata: "Torch" in metres, "HMD" in millimetres
with a Confidence channel that is 0 on every 10th sample. Sample k encodes k in the torch's
x position (0.5 mm per sample), so the reader can check mapping and time stamps per sample.
Writes the time stamp of every pushed sample to ``--stamps`` as JSON when done.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import pylsl


def sample(k: int) -> list[float]:
    a = 0.3 + 0.001 * k
    qw, qz = math.cos(a / 2), math.sin(a / 2)  # rotation about z
    torch = [0.0005 * k, 0.25, 1.1, qw, 0.0, 0.0, qz]  # metres; A (scalar), B, C, D
    hmd = [10.0 * k, -450.0, 1550.0, 1.0, 0.0, 0.0, 0.0]  # millimetres
    conf = 0.0 if k % 10 == 0 else 1.0
    return torch + hmd + [conf]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--stamps", required=True)
    args = ap.parse_args()
    info = pylsl.StreamInfo(args.name, "MoCap", 15, 120.0, pylsl.cf_float32, "test-mocap-1")
    chans = info.desc().append_child("channels")
    kinds = ["PositionX", "PositionY", "PositionZ", "OrientationA", "OrientationB",
             "OrientationC", "OrientationD"]
    for obj, unit in (("Torch", "meters"), ("HMD", "millimeters")):
        for kind in kinds:
            c = chans.append_child("channel")
            c.append_child_value("label", f"{obj}_{kind}")
            c.append_child_value("object", obj)
            c.append_child_value("type", kind)
            c.append_child_value("unit", unit if kind.startswith("Position") else "normalized")
    c = chans.append_child("channel")
    c.append_child_value("label", "HMD_Confidence")
    c.append_child_value("object", "HMD")
    c.append_child_value("type", "Confidence")
    outlet = pylsl.StreamOutlet(info, chunk_size=4, max_buffered=60)
    stamps: list[float] = []
    t0 = pylsl.local_clock()
    k = 0
    print("ready", flush=True)
    while pylsl.local_clock() - t0 < args.seconds:
        due = int((pylsl.local_clock() - t0) * 120.0)
        while k <= due:
            ts = t0 + k / 120.0  # a device clock: regular stamps at the nominal rate
            outlet.push_sample(sample(k), ts)
            stamps.append(ts)
            k += 1
        time.sleep(0.008)
    with open(args.stamps, "w", encoding="utf-8") as fh:
        json.dump(stamps, fh)


if __name__ == "__main__":
    main()
