"""`LslRig`: a `PoseSource` that reads a 6-DoF motion-capture stream from Lab Streaming Layer.

Research labs stream tracked rigid bodies through LSL (stream type ``MoCap``). The bridge

* resolves one stream by name and/or type (and optionally source id);
* maps channels by the stream's metadata, following the XDF MoCap meta-data convention:
  ``desc/channels/channel`` with ``label``, ``object`` (or ``marker``), ``type`` in
  ``PositionX|Y|Z``, ``OrientationA|B|C|D`` (A = scalar part, B, C, D = axial x, y, z) and
  ``Confidence``, and ``unit`` (metres preferred; millimetres and centimetres understood);
  every object with a full position + quaternion becomes one tracker; a ``Confidence``
  channel of zero, or a NaN, marks that tracker invalid for the sample;
* stamps samples in this machine's LSL clock: ``t = outlet timestamp + time_correction()``
  (the inlet's NTP-like offset, refreshed every ``TIME_CORRECTION_EVERY_S``); the driver's
  `clock` is ``pylsl.local_clock``, so the agent's clock probes and the samples agree;
* turns LSL's per-sample time stamps into regular blocks (a new block wherever the spacing
  changes by more than ``BLOCK_TOLERANCE_S``) and counts gaps (spacing above 1.5 periods) —
  liblsl drops the oldest samples silently when its buffer overflows, so the buffer is sized
  (``buffer_s``) and gaps are counted instead of trusted away.

pylsl is an optional dependency (``pip install '.[lsl]'``; it bundles liblsl). Without it,
or without a usable liblsl, constructing the driver raises `LslUnavailable` with the reason.

Confine discovery in tests with `loopback_config` (``LSLAPICFG``): machine scope, the
loopback address only, IPv6 off.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from devices.driver import DriverInfo, SampleBlock, SessionContext
from lab_controller.protocol import Cue

#: The time correction is refreshed this often; liblsl updates its estimate in the background.
TIME_CORRECTION_EVERY_S = 5.0
#: The first `time_correction()` takes ~0.64 s here (performance.md); allow generous time.
FIRST_CORRECTION_TIMEOUT_S = 5.0
#: Samples whose spacing differs by less than this stay in one block (LSL time stamps of a
#: device sampling at a steady rate, dejittered by the outlet or not, vary by well under 1 ms).
BLOCK_TOLERANCE_S = 0.0005
UNIT_TO_MM = {"": 1000.0, "m": 1000.0, "meter": 1000.0, "meters": 1000.0, "metre": 1000.0,
              "metres": 1000.0, "mm": 1.0, "millimeter": 1.0, "millimeters": 1.0,
              "millimetre": 1.0, "millimetres": 1.0, "cm": 10.0, "centimeter": 10.0,
              "centimeters": 10.0}
_AXES = {"PositionX": 0, "PositionY": 1, "PositionZ": 2, "OrientationB": 3,
         "OrientationC": 4, "OrientationD": 5, "OrientationA": 6}
ROLE_HINTS = (("tool", ("tool", "torch", "gun", "nozzle", "pen")),
              ("headset", ("headset", "hmd", "head")),
              ("off_hand", ("off_hand", "offhand", "lefthand", "left_hand")))


class LslUnavailable(RuntimeError):
    """pylsl / liblsl cannot be used here (the message says why)."""


def loopback_config(path: str | Path) -> Path:
    """Write an ``lsl_api.cfg`` that keeps LSL on this machine's loopback; return its path.

    Use it by setting ``LSLAPICFG`` to the path *before* liblsl is first used in a process.
    """
    text = "\n".join([
        "[ports]", "IPv6 = disable", "",
        "[multicast]", "ResolveScope = machine", "ListenAddress = 127.0.0.1",
        "MachineAddresses = {127.0.0.1}", "",
        "[lab]", "KnownPeers = {127.0.0.1}", "",
    ])
    p = Path(path)
    p.write_text(text, encoding="ascii")
    return p


def _pylsl() -> Any:
    try:
        import pylsl
    except ImportError as exc:
        raise LslUnavailable("pylsl is not installed (pip install 'vr-lab-controller[lsl]'); "
                             f"the LSL bridge is unavailable: {exc}") from exc
    except (OSError, RuntimeError) as exc:  # pylsl raises when liblsl cannot be loaded
        raise LslUnavailable(f"liblsl could not be loaded: {exc}") from exc
    return pylsl


@dataclass(frozen=True)
class ChannelMap:
    """Where each tracker's pose components sit in an LSL sample."""

    trackers: tuple[tuple[str, str], ...]  # (name, role)
    index: NDArray[np.intp]  # (T, 7) channel index of x, y, z, qx, qy, qz, qw
    scale: NDArray[np.float64]  # (T,) position unit → mm
    confidence: NDArray[np.intp]  # (T,) channel index of a confidence channel, -1 if none

    @property
    def n_trackers(self) -> int:
        return len(self.trackers)


def _role_for(name: str, roles: Mapping[str, str]) -> str:
    if name in roles:
        return roles[name]
    low = name.lower()
    for role, hints in ROLE_HINTS:
        if any(h in low for h in hints):
            return role
    return "other"


def channel_map(channels: Sequence[Mapping[str, str]],
                roles: Mapping[str, str] | None = None) -> ChannelMap:
    """Build the mapping from per-channel metadata (dicts with label/object/marker/type/unit).

    Raises ValueError when no object has a complete position + quaternion.
    """
    roles = dict(roles or {})
    objects: dict[str, dict[str, Any]] = {}
    for i, ch in enumerate(channels):
        obj = ch.get("object") or ch.get("marker") or ""
        kind = ch.get("type", "")
        if not obj:
            continue
        slot = objects.setdefault(obj, {"axes": {}, "unit": None, "conf": -1})
        if kind in _AXES:
            slot["axes"][_AXES[kind]] = i
            if kind.startswith("Position"):
                unit = (ch.get("unit") or "").strip().lower()
                if unit not in UNIT_TO_MM:
                    raise ValueError(f"channel {ch.get('label', i)!r}: unknown unit {unit!r}")
                slot["unit"] = UNIT_TO_MM[unit]
        elif kind == "Confidence":
            slot["conf"] = i
    names, idx, scale, conf = [], [], [], []
    for obj, slot in objects.items():
        if len(slot["axes"]) != 7:
            continue
        names.append(obj)
        idx.append([slot["axes"][k] for k in range(7)])
        scale.append(slot["unit"] if slot["unit"] is not None else 1000.0)
        conf.append(slot["conf"])
    if not names:
        raise ValueError("no object with PositionX/Y/Z and OrientationA/B/C/D channels in the "
                         "stream metadata (XDF MoCap convention)")
    # the tool first: the scoring binds to the 'tool' role, and people expect it at index 0
    order = sorted(range(len(names)), key=lambda k: _role_for(names[k], roles) != "tool")
    trackers = tuple((names[k], _role_for(names[k], roles)) for k in order)
    return ChannelMap(trackers, np.asarray([idx[k] for k in order], np.intp),
                      np.asarray([scale[k] for k in order], np.float64),
                      np.asarray([conf[k] for k in order], np.intp))


def channels_from_info(info: Any) -> list[dict[str, str]]:
    """Per-channel metadata dicts from a pylsl ``StreamInfo`` (full info, with ``desc``)."""
    out: list[dict[str, str]] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        out.append({k: ch.child_value(k) for k in ("label", "object", "marker", "type", "unit")})
        ch = ch.next_sibling("channel")
    return out


def to_blocks(t: NDArray[np.float64], poses: NDArray[np.float32],
              valid: NDArray[np.bool_], nominal: float) -> list[SampleBlock]:
    """Cut time-stamped samples into regularly spaced blocks (see module docstring)."""
    n = t.shape[0]
    if n == 0:
        return []
    empty = np.zeros((n, 0), np.float32)
    if n == 1:
        return [SampleBlock(float(t[0]), nominal, poses, empty, valid)]
    d = np.diff(t)
    starts = [0]
    i = 1
    while i < n:
        # extend the current block while the spacing stays within tolerance of its first
        lo = starts[-1]
        if i - lo >= 2 and abs(d[i - 1] - d[lo]) > BLOCK_TOLERANCE_S:
            starts.append(i)
        i += 1
    out = []
    bounds = [*starts, n]
    for a, b in itertools.pairwise(bounds):
        period = float((t[b - 1] - t[a]) / (b - 1 - a)) if b - a > 1 else nominal
        if not period > 0:
            period = nominal
        out.append(SampleBlock(float(t[a]), period, poses[a:b], empty[a:b], valid[a:b]))
    return out


class LslRig:
    """A `PoseSource` over one LSL MoCap stream (see the module docstring)."""

    def __init__(self, name: str | None = None, stream_type: str | None = "MoCap",
                 source_id: str | None = None, roles: Mapping[str, str] | None = None,
                 resolve_timeout: float = 5.0, buffer_s: int = 30) -> None:
        self.lsl = _pylsl()
        preds = []
        for key, value in (("name", name), ("type", stream_type), ("source_id", source_id)):
            if value:
                if "'" in value:
                    raise ValueError(f"{key} must not contain a quote: {value!r}")
                preds.append(f"{key}='{value}'")
        if not preds:
            raise ValueError("give a stream name, type or source id to resolve")
        pred = " and ".join(preds)
        found = self.lsl.resolve_bypred(pred, 1, resolve_timeout)
        if not found:
            raise LookupError(f"no LSL stream matching {pred} within {resolve_timeout} s")
        self.inlet = self.lsl.StreamInlet(found[0], max_buflen=buffer_s, recover=True)
        full = self.inlet.info(resolve_timeout)
        self.stream_name = full.name()
        self.source_id = full.source_id()
        srate = float(full.nominal_srate())
        self.nominal_rate = srate if srate > 0 else 120.0
        self.map = channel_map(channels_from_info(full), roles)
        if int(self.map.index.max()) >= full.channel_count():
            raise ValueError("channel metadata refers past the stream's channel count")
        self._info = DriverInfo(trackers=self.map.trackers, rate_hz=self.nominal_rate,
                                analog=(), capabilities=())
        self.offset = 0.0  # outlet clock → our local_clock, from time_correction()
        self._offset_at = -math.inf
        self._running = False
        self._last_t = math.nan
        self.gaps = 0
        self.samples = 0

    def describe(self) -> DriverInfo:
        return self._info

    def clock(self) -> float:
        return float(self.lsl.local_clock())

    def _refresh_offset(self, now: float, timeout: float) -> None:
        if now - self._offset_at >= TIME_CORRECTION_EVERY_S:
            try:
                self.offset = float(self.inlet.time_correction(timeout))
                self._offset_at = now
            except Exception:  # pylsl raises its own TimeoutError / LostError
                if not math.isfinite(self._offset_at):
                    raise
            # keep the previous estimate if a later refresh times out

    def start(self, session: SessionContext, scene: dict[str, Any], params: dict[str, Any]) -> None:
        self.inlet.open_stream(FIRST_CORRECTION_TIMEOUT_S)
        self._refresh_offset(self.clock(), FIRST_CORRECTION_TIMEOUT_S)
        self.inlet.flush()  # samples from before the session are not part of it
        self._running = True
        self._last_t = math.nan
        self.gaps = 0
        self.samples = 0

    def convert(self, data: NDArray[Any], stamps: NDArray[np.float64]
                ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.bool_]]:
        """LSL chunk (n, C) + outlet time stamps → (local times, poses (n, T, 7) mm, valid)."""
        m = self.map
        x = np.asarray(data, np.float64)
        poses = x[:, m.index]  # (n, T, 7)
        poses[:, :, :3] *= m.scale[None, :, None]
        valid: NDArray[np.bool_] = np.asarray(np.isfinite(poses).all(axis=2), dtype=bool)
        has_conf = m.confidence >= 0
        if has_conf.any():
            conf = x[:, m.confidence[has_conf]]
            valid[:, has_conf] &= conf > 0.0
        out = poses.astype(np.float32)
        out[~valid] = np.nan
        return np.asarray(stamps, np.float64) + self.offset, out, valid

    def read(self, now: float) -> Sequence[SampleBlock]:
        if not self._running:
            return ()
        self._refresh_offset(now, 0.05)
        data, stamps = self.inlet.pull_chunk(timeout=0.0, max_samples=4096)
        if not stamps:
            return ()
        t, poses, valid = self.convert(np.asarray(data), np.asarray(stamps, np.float64))
        period = 1.0 / self.nominal_rate
        seq_t = np.concatenate([[self._last_t], t]) if math.isfinite(self._last_t) else t
        self.gaps += int(np.count_nonzero(np.diff(seq_t) > 1.5 * period))
        self._last_t = float(t[-1])
        self.samples += int(t.shape[0])
        return to_blocks(t, poses, valid, period)

    def on_cue(self, cue: Cue) -> None:
        """Cues cannot be shown through an LSL inlet; the rig's own display handles them."""

    def stop(self) -> None:
        self._running = False

    @property
    def finished(self) -> bool:
        return False

    def close(self) -> None:
        self.inlet.close_stream()

