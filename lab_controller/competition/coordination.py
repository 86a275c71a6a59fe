"""Coordinated start of a heat across site controllers.

Each site runs a :class:`SiteAgent` next to its lab controller (it talks to the controller only
through the instructor API, so the controller needs no change). The competition's
:class:`Coordinator` (anywhere that reaches the sites) then, per heat:

1. **clock check** — 8 four-timestamp probes per site (as NTP/LSL do); the probe with the
   smallest round trip gives the site clock's offset to the coordinator's;
2. **prepare** — each site checks its rigs through ``api.rigs`` (known, alive, idle, trackers
   tracking, rig clock offset known and its round trip under ``max_rig_rtt_s``) and answers
   which are ready and why the others are not;
3. **start** — the coordinator picks ``start_at`` = now + ``lead_s`` on its clock and sends
   each site that instant converted to the site's clock; each site waits for it and issues
   one ``api.class_launch`` (STARTs back to back); it answers with every rig's start time
   (the rig's ACK time mapped to the controller clock by the controller);
4. **account** — start times are mapped back to the coordinator clock; a rig whose start is
   more than ``tolerance_s`` from ``start_at`` is ``late``, one that did not start is
   ``failed``; both keep their reason.

Messages: one JSON frame each over DEALER (coordinator) → ROUTER (site), every object with
``"v": 1`` and a ``type``; documented in docs/competitions.md §Coordination.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq

from lab_controller import protocol as P
from lab_controller.controller.transport import ApiClient, ApiError

log = logging.getLogger(__name__)

VERSION = 1
# 100 ms: tolerance stated for a heat across sites. Measured spread on this 2-core machine is
# a few ms (docs/competitions.md); 100 ms leaves room for a loaded controller loop and is well
# below what a competitor perceives at a "go" signal (human reaction ~200 ms).
DEFAULT_TOLERANCE_S = 0.1
# 1.5 s: the start message must reach every site and each site must wake before start_at;
# a round trip is ~0.1-10 ms here, the rigs' START + ACK a few ms more.
DEFAULT_LEAD_S = 1.5
PROBES = 8  # as LSL: keep the probe with the smallest round trip among 8
DEFAULT_MAX_RIG_RTT_S = 0.05  # a rig whose clock probe takes > 50 ms has an unreliable offset


class CoordinationError(RuntimeError):
    """A site did not answer or refused."""


def _encode(msg: Mapping[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **msg}, separators=(",", ":")).encode()


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        msg = json.loads(raw)
    except ValueError as exc:
        raise CoordinationError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or msg.get("v") != VERSION or "type" not in msg:
        raise CoordinationError(f"not a v{VERSION} coordination message")
    return msg


# ---- site side -----------------------------------------------------------------------------
class SiteAgent:
    """Answers the coordinator for one site; drives the site's controller through its API.

    ``clock`` is the site's wall clock (``time.time``); tests pass a skewed one to show that
    offsets are measured and applied.
    """

    def __init__(self, site_id: str, bind: str, api_endpoint: str, *,
                 clock: Callable[[], float] = time.time,
                 max_rig_rtt_s: float = DEFAULT_MAX_RIG_RTT_S) -> None:
        self.site_id = site_id
        self.api_endpoint = api_endpoint
        self.clock = clock
        self.max_rig_rtt_s = max_rig_rtt_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.linger = 0
        self._sock.bind(bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SiteAgent:
        self._thread = threading.Thread(target=self._run, name=f"site-{self.site_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close(0)
        self._ctx.term()

    def _run(self) -> None:
        api = ApiClient(self.api_endpoint, timeout_s=30.0)
        try:
            while not self._stop.is_set():
                if not self._sock.poll(100):
                    continue
                ident, raw = self._sock.recv_multipart()
                t1 = self.clock()
                try:
                    msg = _decode(raw)
                    reply = self._handle(api, msg, t1)
                except (CoordinationError, ApiError) as exc:
                    reply = {"type": "error", "detail": str(exc)}
                self._sock.send_multipart([ident, _encode(reply)])
        finally:
            api.close()

    def _handle(self, api: ApiClient, msg: dict[str, Any], t1: float) -> dict[str, Any]:
        kind = msg["type"]
        if kind == "time_sync":
            return {"type": "time_sync_reply", "probe": msg.get("probe"), "t0": msg["t0"],
                    "t1": t1, "t2": self.clock()}
        if kind == "prepare":
            return {"type": "prepared", "site_id": self.site_id,
                    **self.check_rigs(api, list(msg["rigs"]))}
        if kind == "start":
            return self._start(api, msg)
        raise CoordinationError(f"unknown type {kind!r}")

    def check_rigs(self, api: ApiClient, rigs: Sequence[str]) -> dict[str, Any]:
        """Launch preconditions per rig (the controller's own health check, seen via the API)."""
        rows = {r["rig_id"]: r for r in api.request(P.ApiRigs()).data.get("rigs", [])}
        ready: list[str] = []
        failed: list[dict[str, str]] = []
        for rig in rigs:
            r = rows.get(rig)
            reasons = []
            if r is None:
                reasons.append("unknown rig (never registered)")
            elif not r.get("alive"):
                reasons.append("dead (no heartbeat)")
            else:
                if r.get("session_id") or r.get("state") not in ("idle",):
                    reasons.append(f"busy ({r.get('state')})")
                if not r.get("trackers_present", True):
                    reasons.append("trackers not tracking")
                if r.get("clock_offset_s") is None:
                    reasons.append("clock offset not yet known")
                elif (r.get("clock_rtt_s") or 0.0) > self.max_rig_rtt_s:
                    reasons.append(f"clock probe round trip {r['clock_rtt_s']:.3f} s "
                                   f"> {self.max_rig_rtt_s} s")
            if reasons:
                failed.append({"rig_id": rig, "reason": "; ".join(reasons)})
            else:
                ready.append(rig)
        return {"ready": ready, "failed": failed}

    def _start(self, api: ApiClient, msg: dict[str, Any]) -> dict[str, Any]:
        start_at = float(msg["start_at"])  # in this site's clock
        while True:  # sleep to 2 ms before, then yield until the instant
            left = start_at - self.clock()
            if left <= 0:
                break
            time.sleep(left - 0.002 if left > 0.003 else 0)
        launched_at = self.clock()
        skew = launched_at - time.time()  # the controller reports in the real wall clock
        rigs = list(msg["rigs"])
        if not rigs:
            return {"type": "started", "site_id": self.site_id, "launched_at": launched_at,
                    "results": []}
        try:
            data = api.request(P.ApiClassLaunch(
                exercise_id=msg["exercise_id"], rigs=rigs, trainees=list(msg["trainees"]),
                rubric_version=str(msg.get("rubric_version", "")),
                duration_s=msg.get("duration_s"), params=dict(msg.get("params", {}))),
                timeout_s=30.0).data
        except ApiError as exc:
            return {"type": "started", "site_id": self.site_id, "launched_at": launched_at,
                    "results": [{"rig_id": r, "ok": False, "reason": f"class launch: {exc}"}
                                for r in rigs]}
        results = []
        for row in data.get("results", []):
            t = row.get("start_controller_time")
            results.append({"rig_id": row["rig_id"], "ok": bool(row.get("ok")),
                            "session_id": row.get("session_id"),
                            "reason": row.get("reason", ""),
                            "start_time": None if t is None else float(t) + skew})
        return {"type": "started", "site_id": self.site_id, "launched_at": launched_at,
                "results": results}


# ---- coordinator side ----------------------------------------------------------------------
@dataclass
class SiteClock:
    site_id: str
    offset_s: float  # site clock - coordinator clock
    rtt_s: float


@dataclass
class EntryPlan:
    competitor_id: str
    site_id: str
    rig_id: str


@dataclass
class HeatStart:
    """What happened at a heat's start (what ``telemetry.competition`` records)."""

    heat_id: str
    start_at: float  # coordinator clock (Unix seconds)
    tolerance_s: float
    clocks: dict[str, SiteClock]
    entries: list[dict[str, Any]] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)

    @property
    def started_times(self) -> list[float]:
        return [e["start_time"] for e in self.entries
                if e["start_state"] in ("started", "late") and e["start_time"] is not None]

    @property
    def spread_s(self) -> float | None:
        t = self.started_times
        return max(t) - min(t) if len(t) > 1 else (0.0 if t else None)

    @property
    def state(self) -> str:
        return "started" if self.started_times else "failed"


class Coordinator:
    """Starts heats on several sites at once (see the module docstring)."""

    def __init__(self, sites: Mapping[str, str], *, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socks: dict[str, zmq.Socket[bytes]] = {}
        for site, endpoint in sites.items():
            s = self._ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(endpoint)
            self._socks[site] = s

    def close(self) -> None:
        for s in self._socks.values():
            s.close(0)
        self._ctx.term()

    def _ask(self, site: str, msg: Mapping[str, Any], timeout_s: float | None = None
             ) -> dict[str, Any]:
        s = self._socks[site]
        s.send(_encode(msg))
        if not s.poll(int(1000 * (timeout_s or self.timeout_s))):
            raise CoordinationError(f"site {site} did not answer {msg['type']}")
        reply = _decode(s.recv())
        if reply["type"] == "error":
            raise CoordinationError(f"site {site}: {reply.get('detail')}")
        return reply

    def measure_clock(self, site: str) -> SiteClock:
        best: tuple[float, float] | None = None
        for i in range(PROBES):
            t0 = self.clock()
            r = self._ask(site, {"type": "time_sync", "probe": i, "t0": t0})
            t3 = self.clock()
            rtt = (t3 - t0) - (float(r["t2"]) - float(r["t1"]))
            offset = ((float(r["t1"]) - t0) + (float(r["t2"]) - t3)) / 2
            if best is None or rtt < best[0]:
                best = (rtt, offset)
        assert best is not None
        return SiteClock(site, best[1], best[0])

    def start_heat(self, heat_id: str, plan: Sequence[EntryPlan], *, exercise_id: str,
                   rubric_version: str = "", duration_s: float | None = None,
                   params: Mapping[str, Any] | None = None,
                   tolerance_s: float = DEFAULT_TOLERANCE_S,
                   lead_s: float = DEFAULT_LEAD_S) -> HeatStart:
        sites = sorted({p.site_id for p in plan})
        unknown = [s for s in sites if s not in self._socks]
        if unknown:
            raise CoordinationError(f"no endpoint for sites {unknown}")
        clocks = {s: self.measure_clock(s) for s in sites}
        prepared = {s: self._ask(s, {"type": "prepare", "heat_id": heat_id,
                                     "rigs": [p.rig_id for p in plan if p.site_id == s]})
                    for s in sites}
        start_at = self.clock() + lead_s
        for s in sites:  # send every start before collecting any answer
            ready = set(prepared[s]["ready"])
            mine = [p for p in plan if p.site_id == s and p.rig_id in ready]
            self._socks[s].send(_encode({
                "type": "start", "heat_id": heat_id,
                "start_at": start_at + clocks[s].offset_s, "exercise_id": exercise_id,
                "rubric_version": rubric_version, "duration_s": duration_s,
                "params": {**(params or {}), "heat_id": heat_id},
                "rigs": [p.rig_id for p in mine], "trainees": [p.competitor_id for p in mine]}))
        report = HeatStart(heat_id, start_at, tolerance_s, clocks)
        outcome: dict[tuple[str, str], dict[str, Any]] = {}
        for s in sites:
            sock = self._socks[s]
            if not sock.poll(int(1000 * (lead_s + self.timeout_s + 30.0))):
                raise CoordinationError(f"site {s} did not report its start")
            started = _decode(sock.recv())
            if started["type"] == "error":
                raise CoordinationError(f"site {s}: {started.get('detail')}")
            for r in started["results"]:
                outcome[(s, r["rig_id"])] = r
            failed = {f["rig_id"]: f["reason"] for f in prepared[s]["failed"]}
            for f_rig, reason in failed.items():
                outcome[(s, f_rig)] = {"ok": False, "reason": f"not ready: {reason}"}
            report.sites.append({
                "site_id": s, "clock_offset_ms": 1000 * clocks[s].offset_s,
                "clock_rtt_ms": 1000 * clocks[s].rtt_s, "rigs_ready": len(prepared[s]["ready"]),
                "rigs_failed": len(failed),
                "detail": {"launched_late_ms": 1000 * (float(started["launched_at"])
                                                       - clocks[s].offset_s - start_at)}})
        for p in plan:
            r = outcome.get((p.site_id, p.rig_id), {"ok": False, "reason": "no answer"})
            t_site = r.get("start_time")
            t = None if t_site is None else float(t_site) - clocks[p.site_id].offset_s
            delta = None if t is None else t - start_at
            if r.get("ok") and delta is not None and abs(delta) <= tolerance_s:
                state, reason = "started", ""
            elif r.get("ok"):
                state = "late"
                reason = ("start time unknown" if delta is None else
                          f"started {1000 * delta:+.1f} ms from the agreed start "
                          f"(tolerance {1000 * tolerance_s:.0f} ms)")
            else:
                state, reason = "failed", str(r.get("reason") or "not started")
            report.entries.append({
                "competitor_id": p.competitor_id, "site_id": p.site_id, "rig_id": p.rig_id,
                "session_id": r.get("session_id"), "start_state": state, "reason": reason,
                "start_time": t, "start_time_us": None if t is None else round(t * 1e6),
                "start_offset_ms": None if delta is None else 1000 * delta})
        return report
