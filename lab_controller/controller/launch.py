"""Class launch: the same exercise on many rigs, each checked first, all started together.

A launch is a small plan the engine executes in one pass of its loop: resolve the rigs (listed,
or every idle live rig), pair them with trainees, health-check each (alive, idle, every tracker
present, clock offset known), send START to every healthy rig back to back — so the STARTs leave
within milliseconds of each other, well inside the 1 s requirement — then collect each rig's
ACK/NACK/timeout and report per rig what happened.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab_controller import protocol as P

if TYPE_CHECKING:
    from lab_controller.controller.core import CommandOutcome, Controller
    from lab_controller.controller.sessions import Session


@dataclass(slots=True)
class HealthCheck:
    """One rig's readiness for a launch; `reasons` says what failed, in teacher language."""

    rig_id: str
    known: bool = False
    alive: bool = False
    idle: bool = False
    trackers_present: bool = False
    clock_known: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "known": self.known, "alive": self.alive, "idle": self.idle,
            "trackers_present": self.trackers_present, "clock_known": self.clock_known,
            "ok": self.ok, "reasons": list(self.reasons),
        }


def health_check(ctrl: Controller, rig_id: str) -> HealthCheck:
    """Check one rig against the launch preconditions."""
    hc = HealthCheck(rig_id)
    rec = ctrl.registry.get(rig_id)
    if rec is None:
        hc.reasons.append("unknown rig (never registered)")
        return hc
    hc.known = True
    hc.alive = rec.alive
    if not rec.alive:
        hc.reasons.append("dead (no heartbeat)")
        return hc
    busy = ctrl.busy_reason(rec)
    hc.idle = busy is None
    if busy is not None:
        hc.reasons.append(busy)
    # Present = reported valid at least once within the dead-after window (3 heartbeats), so a
    # tracker occluded at the instant of the last heartbeat does not keep a trainee out.
    missing = rec.missing_trackers(time.monotonic(), ctrl.registry.dead_after_s)
    hc.trackers_present = not missing
    if missing:
        hc.reasons.append(f"trackers not tracking: {', '.join(missing)}")
    hc.clock_known = rec.clock.known
    if not hc.clock_known:
        hc.reasons.append("clock offset not yet known")
    return hc


@dataclass(slots=True)
class _RigResult:
    rig_id: str
    trainee: str
    health: HealthCheck
    session_id: str | None = None
    ok: bool = False
    state: str = "not_started"
    reason: str = ""
    sent_at: float | None = None  # monotonic
    outcome_at: float | None = None
    start_controller_time: float | None = None  # ACK rig_time in the controller clock
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        ack_ms = None
        if self.sent_at is not None and self.outcome_at is not None:
            ack_ms = round(1000 * (self.outcome_at - self.sent_at), 3)
        return {
            "rig_id": self.rig_id, "trainee": self.trainee, "ok": self.ok,
            "session_id": self.session_id, "state": self.state, "reason": self.reason,
            "health": self.health.to_dict(), "ack_ms": ack_ms,
            "start_controller_time": self.start_controller_time,
        }


class ClassLaunch:
    """Executes one `api.class_launch` request on the controller loop."""

    def __init__(
        self,
        ctrl: Controller,
        req: P.ApiClassLaunch,
        on_done: Callable[[bool, str, str, dict[str, Any]], None],
    ) -> None:
        self.ctrl = ctrl
        self.req = req
        self.on_done = on_done  # (ok, error_code, error, data)
        self.class_id = str(uuid.uuid4())
        self.results: list[_RigResult] = []
        self._pending = 0
        self._finished = False

    def run(self) -> None:
        req = self.req
        if req.rigs is None:
            rigs = [r.rig_id for r in self.ctrl.registry
                    if r.alive and self.ctrl.busy_reason(r) is None]
        else:
            rigs = list(dict.fromkeys(req.rigs))  # keep order, drop repeats
        if not rigs:
            self.on_done(False, "not_found", "no rigs to launch on (none listed or none idle)",
                         {"results": []})
            return
        if req.trainees and len(req.trainees) != len(rigs):
            self.on_done(False, "invalid",
                         f"{len(req.trainees)} trainees for {len(rigs)} rigs: give one per rig",
                         {"rigs": rigs})
            return
        trainees = list(req.trainees) or [""] * len(rigs)
        for rig_id, trainee in zip(rigs, trainees, strict=True):
            self.results.append(_RigResult(rig_id, trainee, health_check(self.ctrl, rig_id)))
        healthy = [r for r in self.results if r.health.ok]
        for r in self.results:
            if not r.health.ok:
                r.done = True
                r.state = "not_started"
                r.reason = "; ".join(r.health.reasons)
        self._pending = len(healthy)
        # All STARTs in one pass, back to back (the 1 s simultaneity requirement).
        for r in healthy:
            r.sent_at = time.monotonic()
            self.ctrl.start_session(
                r.rig_id, req.exercise_id, r.trainee, rubric_version=req.rubric_version,
                duration_s=req.duration_s, params=dict(req.params), class_id=self.class_id,
                on_done=self._make_done(r),
            )
        self._maybe_finish()

    def _make_done(self, r: _RigResult) -> Callable[[Session, CommandOutcome], None]:
        def done(session: Session, outcome: CommandOutcome) -> None:
            r.session_id = session.session_id or None
            r.ok = outcome.ok
            r.state = session.state.value if session.session_id else "not_started"
            r.reason = "started" if outcome.ok else f"{outcome.code}: {outcome.reason}"
            r.outcome_at = outcome.at
            rec = self.ctrl.registry.get(r.rig_id)
            if outcome.ok and outcome.rig_time is not None and rec is not None:
                r.start_controller_time = rec.clock.to_controller_time(outcome.rig_time)
            r.done = True
            self._pending -= 1
            self._maybe_finish()

        return done

    def _maybe_finish(self) -> None:
        if self._finished or self._pending > 0:
            return
        self._finished = True
        started = [r for r in self.results if r.ok]
        times = [r.start_controller_time for r in started if r.start_controller_time is not None]
        sends = [r.sent_at for r in started if r.sent_at is not None]
        data: dict[str, Any] = {
            "class_id": self.class_id,
            "exercise_id": self.req.exercise_id,
            "results": [r.to_dict() for r in self.results],
            "started": len(started),
            "not_started": [r.rig_id for r in self.results if not r.ok],
            "start_spread_s": round(max(times) - min(times), 6) if len(times) > 1 else 0.0,
            "send_spread_s": round(max(sends) - min(sends), 6) if len(sends) > 1 else 0.0,
        }
        self.on_done(True, "", "", data)
