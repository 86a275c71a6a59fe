#!/usr/bin/env python3
"""Regenerate the exercise library (scene, expert reference trace, default rubric).

Deterministic: the expert reference of each exercise is the expert skill model run with a
fixed seed through the same generator the simulated rigs use, written into NPZ files with
fixed zip timestamps, so rerunning this script reproduces every file byte for byte
(``tests/devices/test_exercises.py`` checks it).

    .venv/bin/python scripts/make_exercises.py [--check]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from devices.sim.skill import EXPERT
from devices.sim.trainee import TraineeMotion
from sim_kernels.rubric import Rubric

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "lab_controller" / "exercises" / "data"
RATE_HZ = 120.0  # reference traces at the rigs' highest nominal rate
REFERENCE_SEED = 20260101  # fixed: the reference must never change silently
#: Reference = expert model without tracking artefacts (an expert's clean recording).
REFERENCE_SKILL = EXPERT.model_copy(update={"dropout_per_min": 0.0})
TORCH_TIP_MM = [0.0, 0.0, 160.0]  # tracker puck on the torch handle, 160 mm behind the tip
GUN_TIP_MM = [0.0, 0.0, 120.0]  # tracker on the gun body, nozzle 120 mm ahead along +Z
BENCH_Z = 900.0  # bench-top height, mm (lab frame: x right, y away from trainee, z up)

FRAME_DOC = ("lab frame, mm: x to the trainee's right, y away from the trainee, z up; "
             "quaternions scalar-last; tool +Z from handle to tip; "
             "tip = tracker position + R @ tool.tip_offset_mm")


def _levels_note() -> str:
    return "default national-level thresholds of sim_kernels.rubric"


def fillet_scene() -> dict[str, Any]:
    return {
        "scene_version": 1,
        "exercise_id": "fillet_t_joint_h",
        "kind": "weld_fillet",
        "frame": FRAME_DOC,
        "tool": {"tracker": "tool", "kind": "mig_torch", "tip_offset_mm": TORCH_TIP_MM},
        "weld": {
            # horizontal fillet: base plate on the bench, web plate standing at y = 0;
            # the joint is the corner on the trainee's side of the web, welded left to right
            "line_start_mm": [-75.0, 0.0, BENCH_Z],
            "line_end_mm": [75.0, 0.0, BENCH_Z],
            "plate_normal": [0.0, 0.0, 1.0],
            "wall_normal": [0.0, -1.0, 0.0],
            "approach_dir": [0.0, 1.0, 0.0],
            "joint": "t_joint",
            "plate_thickness_mm": 6.0,
        },
        "geometry": {  # sim_kernels.process.WeldGeometry.from_dict keys
            "line_start": [-75.0, 0.0, BENCH_Z], "line_end": [75.0, 0.0, BENCH_Z],
            "normal": [0.0, 0.0, 1.0], "second_normal": [0.0, -1.0, 0.0],
            "tip_offset": TORCH_TIP_MM,
        },
        "targets": {"work_angle_deg": 45.0, "travel_angle_deg": 10.0, "ctwd_mm": 15.0,
                    "travel_speed_mm_s": 5.0, "aim_offset_mm": 0.0},
        "timing": {"lead_in_s": 1.0, "lead_out_s": 1.0, "max_duration_s": 120.0},
        "body": {"headset_mm": [0.0, -450.0, 1550.0], "off_hand_mm": [-180.0, -150.0, 910.0]},
    }


def butt_scene() -> dict[str, Any]:
    return {
        "scene_version": 1,
        "exercise_id": "butt_weave_flat",
        "kind": "weld_butt_weave",
        "frame": FRAME_DOC,
        "tool": {"tracker": "tool", "kind": "mig_torch", "tip_offset_mm": TORCH_TIP_MM},
        "weld": {
            # flat butt joint, V-groove along x; weave side to side across the joint
            "line_start_mm": [-60.0, 0.0, BENCH_Z],
            "line_end_mm": [60.0, 0.0, BENCH_Z],
            "plate_normal": [0.0, 0.0, 1.0],
            "approach_dir": [0.0, 1.0, 0.0],
            "joint": "butt_v_groove",
            "plate_thickness_mm": 10.0,
            "root_gap_mm": 2.0,
        },
        "geometry": {  # sim_kernels.process.WeldGeometry.from_dict keys
            "line_start": [-60.0, 0.0, BENCH_Z], "line_end": [60.0, 0.0, BENCH_Z],
            "normal": [0.0, 0.0, 1.0], "tip_offset": TORCH_TIP_MM,
        },
        "targets": {"work_angle_deg": 90.0, "travel_angle_deg": 10.0, "ctwd_mm": 15.0,
                    "travel_speed_mm_s": 4.0, "aim_offset_mm": 0.0,
                    "weave_amplitude_mm": 3.0, "weave_period_s": 1.0},
        "timing": {"lead_in_s": 1.0, "lead_out_s": 1.0, "max_duration_s": 120.0},
        "body": {"headset_mm": [0.0, -450.0, 1550.0], "off_hand_mm": [-180.0, -150.0, 910.0]},
    }


def spray_scene() -> dict[str, Any]:
    width, height, fan, overlap = 800.0, 500.0, 200.0, 0.5
    pitch = fan * (1.0 - overlap)  # 50 % overlap: next pass one half fan lower
    overshoot = 100.0  # trigger on before the edge, off after it
    panel_y, centre_z = 600.0, 1300.0
    top = centre_z + height / 2.0
    n_pass = round(height / pitch)
    passes = []
    for i in range(n_pass):
        z = top - pitch / 2.0 - i * pitch
        xs = (-width / 2.0 - overshoot, width / 2.0 + overshoot)
        if i % 2:
            xs = xs[::-1]
        passes.append({"start_mm": [xs[0], panel_y, z], "end_mm": [xs[1], panel_y, z]})
    return {
        "scene_version": 1,
        "exercise_id": "spray_panel_flat",
        "kind": "spray_panel",
        "frame": FRAME_DOC,
        "tool": {"tracker": "tool", "kind": "hvlp_gun", "tip_offset_mm": GUN_TIP_MM},
        "spray": {
            "surface": {"point_mm": [0.0, panel_y, centre_z], "normal": [0.0, -1.0, 0.0],
                        "u_axis": [1.0, 0.0, 0.0], "width_mm": width, "height_mm": height},
            "fan_width_mm": fan,
            "pass_pitch_mm": pitch,
            # pass centre lines on the surface, serpentine from the top; between passes the
            # gun moves straight to the next start with the trigger released
            "passes": passes,
        },
        "geometry": {  # sim_kernels.process.SprayGeometry.from_dict keys
            "point": [0.0, panel_y, centre_z], "normal": [0.0, -1.0, 0.0],
            "pass_direction": [1.0, 0.0, 0.0], "fan_width_mm": fan, "tip_offset": GUN_TIP_MM,
        },
        "targets": {"gun_distance_mm": 200.0, "gun_angle_deg": 90.0, "gun_speed_mm_s": 300.0,
                    "pass_overlap_pct": 50.0},
        "timing": {"lead_in_s": 1.0, "lead_out_s": 1.0, "max_duration_s": 120.0},
        "body": {"headset_mm": [0.0, -300.0, 1600.0], "off_hand_mm": [-300.0, -100.0, 1100.0]},
    }


def rubric_for(scene: dict[str, Any], title: str) -> dict[str, Any]:
    ex = scene["exercise_id"]
    if scene["kind"] == "weld_fillet":
        metrics = {
            "work_angle": {"ideal": 45.0, "min": 37.0, "max": 53.0, "weight": 1.0},
            "travel_angle": {"ideal": 10.0, "min": 0.0, "max": 20.0, "weight": 1.0},
            "ctwd": {"ideal": 15.0, "min": 10.0, "max": 20.0, "weight": 1.0},
            "travel_speed": {"ideal": 5.0, "min": 3.5, "max": 6.5, "weight": 1.0},
            "aim_offset": {"ideal": 0.0, "min": -2.0, "max": 2.0, "weight": 1.0},
        }
        process = "welding"
    elif scene["kind"] == "weld_butt_weave":
        metrics = {
            "work_angle": {"ideal": 90.0, "min": 82.0, "max": 98.0, "weight": 1.0},
            "travel_angle": {"ideal": 10.0, "min": 0.0, "max": 20.0, "weight": 1.0},
            "ctwd": {"ideal": 15.0, "min": 10.0, "max": 20.0, "weight": 1.0},
            "travel_speed": {"ideal": 4.0, "min": 2.8, "max": 5.2, "weight": 1.0},
            "weave_amplitude": {"ideal": 3.0, "min": 2.0, "max": 4.5, "weight": 0.5},
            "weave_period": {"ideal": 1.0, "min": 0.7, "max": 1.4, "weight": 0.5},
        }
        process = "welding"
    else:
        metrics = {
            "gun_distance": {"ideal": 200.0, "min": 150.0, "max": 250.0, "weight": 1.0},
            "gun_angle": {"ideal": 90.0, "min": 80.0, "max": 90.0, "weight": 1.0},
            "gun_speed": {"ideal": 300.0, "min": 230.0, "max": 370.0, "weight": 1.0},
            "pass_overlap": {"ideal": 50.0, "min": 35.0, "max": 65.0, "weight": 1.0},
        }
        process = "spray"
    rubric = Rubric.from_dict({"rubric_id": f"{ex}.default", "version": 1, "exercise": ex,
                               "title": f"{title}: default rubric", "process": process,
                               "metrics": metrics})
    out: dict[str, Any] = json.loads(rubric.to_json())
    return out


EXERCISES: tuple[tuple[str, str, Any], ...] = (
    ("fillet_t_joint_h", "Horizontal fillet weld, T-joint (GMAW)", fillet_scene),
    ("butt_weave_flat", "Flat butt weld with weave (GMAW)", butt_scene),
    ("spray_panel_flat", "Flat panel, five overlapping spray passes (HVLP)", spray_scene),
)


def reference_trace(scene: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run the expert model once (tool tracker only) until the exercise finishes."""
    sim = TraineeMotion(scene, REFERENCE_SKILL, trackers=("tool",), seed=REFERENCE_SEED)
    dt = 1.0 / RATE_HZ
    chunks_t, chunks_p, chunks_a = [], [], []
    k = 0
    block = 60
    while True:
        t = (k + np.arange(block, dtype=np.float64)) * dt
        poses, analog, _valid = sim.generate(t)
        chunks_t.append(t)
        chunks_p.append(poses[:, 0])
        chunks_a.append(analog[:, 0])
        k += block
        if t[-1] >= sim.finished_at:
            break
    t_all = np.concatenate(chunks_t)
    keep = t_all <= sim.finished_at
    return {
        "t": t_all[keep].astype(np.float64),
        "tool_pose": np.concatenate(chunks_p)[keep].astype(np.float32),
        "trigger": np.concatenate(chunks_a)[keep].astype(np.float32),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps (byte-reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    path.write_bytes(buf.getvalue())


def build(out: Path) -> dict[str, bytes]:
    """Write every exercise under ``out``; return {relative path: bytes} written."""
    written: dict[str, bytes] = {}
    for ex_id, title, make_scene in EXERCISES:
        scene = make_scene()
        ref = reference_trace(scene)
        d = out / ex_id
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "exercise_id": ex_id,
            "title": title,
            "kind": scene["kind"],
            "rate_hz": RATE_HZ,
            "nominal_duration_s": round(float(ref["t"][-1]), 3),
            "scene": scene,
            "reference": {"file": "reference.npz", "seed": REFERENCE_SEED,
                          "skill": REFERENCE_SKILL.model_dump(),
                          "arrays": {"t": "s from start, float64",
                                     "tool_pose": "(n, 7) float32 tracker pose",
                                     "trigger": "(n,) float32, 1 = arc/spray on"}},
            "rubric": {"file": "rubric.json", "note": _levels_note()},
        }
        (d / "exercise.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
        (d / "rubric.json").write_text(json.dumps(rubric_for(scene, title), indent=2,
                                                  sort_keys=True, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        write_npz(d / "reference.npz", ref)
        for name in ("exercise.json", "rubric.json", "reference.npz"):
            written[f"{ex_id}/{name}"] = (d / name).read_bytes()
    return written


def _same(path: Path, fresh: bytes) -> bool:
    """Scene and reference must match byte for byte. A rubric file pins every field when it
    is written (a versioned rubric must not change when a code default does), so only the
    parts this script decides (ids, metrics and windows) are compared."""
    if not path.exists():
        return False
    if path.name != "rubric.json":
        return path.read_bytes() == fresh
    keys = ("rubric_id", "version", "exercise", "process", "metrics")
    old, new = json.loads(path.read_bytes()), json.loads(fresh)
    return all(old.get(k) == new.get(k) for k in keys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with --out")
    args = ap.parse_args(argv)
    if args.check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            fresh = build(Path(tmp))
        stale = [k for k, v in fresh.items() if not _same(args.out / k, v)]
        if stale:
            print("out of date: " + ", ".join(stale))
            return 1
        print(f"{len(fresh)} files up to date")
        return 0
    for name, data in build(args.out).items():
        print(f"{name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
