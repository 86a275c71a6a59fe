"""Session state machine: one `Session` per run of an exercise on one rig.

The engine (`lab_controller.controller.core`) decides *when* to move a session; this module
decides *whether* a move is legal, stamps it and emits it as a `SessionEvent`. Keeping the table
here, free of sockets and clocks, makes every transition testable on its own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class SessionState(enum.StrEnum):
    """Where a session is; see `TRANSITIONS` for the legal moves."""

    ASSIGNED = "assigned"  # rig + trainee + exercise bound; START not yet accepted
    ARMED = "armed"  # rig accepted START; no sample has arrived yet
    RUNNING = "running"  # samples are flowing
    STOPPING = "stopping"  # STOP accepted; waiting for the rig's tail to become durable
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # rig went silent; resumes if it returns within the grace period


TERMINAL = frozenset({SessionState.FINISHED, SessionState.ABORTED, SessionState.FAILED})
ACTIVE = frozenset(SessionState) - TERMINAL

S = SessionState
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.ASSIGNED: frozenset({S.ARMED, S.RUNNING, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    S.ARMED: frozenset({S.RUNNING, S.STOPPING, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    S.RUNNING: frozenset({S.STOPPING, S.FINISHED, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    S.STOPPING: frozenset({S.FINISHED, S.ABORTED, S.FAILED, S.INTERRUPTED}),
    # An interrupted session returns to where it was (running or stopping) when the rig is back.
    S.INTERRUPTED: frozenset({S.ARMED, S.RUNNING, S.STOPPING, S.ABORTED, S.FAILED}),
    S.FINISHED: frozenset(),
    S.ABORTED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    """A move the state table does not allow (a bug or a stale command, never silently done)."""


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One timestamped transition; the telemetry layer stores these as the session's log."""

    session_id: str
    rig_id: str
    from_state: SessionState | None  # None for the creation event
    to_state: SessionState
    at: float  # controller wall clock, seconds since the epoch
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the API and logs."""
        return {
            "session_id": self.session_id,
            "rig_id": self.rig_id,
            "from": None if self.from_state is None else self.from_state.value,
            "to": self.to_state.value,
            "at": self.at,
            "reason": self.reason,
        }


EventSink = Callable[[SessionEvent], None]


@dataclass(slots=True)
class Session:
    """A session's identity, assignment, state and history."""

    session_id: str
    rig_id: str
    exercise: str
    trainee: str
    rubric_version: str = ""
    class_id: str | None = None
    state: SessionState = SessionState.ASSIGNED
    resume_state: SessionState | None = None  # where an interrupted session goes back to
    interrupted_at: float | None = None
    reason: str = ""
    history: list[SessionEvent] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def active(self) -> bool:
        """True until the session reaches a terminal state."""
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (history included)."""
        return {
            "session_id": self.session_id,
            "rig_id": self.rig_id,
            "exercise": self.exercise,
            "trainee": self.trainee,
            "rubric_version": self.rubric_version,
            "class_id": self.class_id,
            "state": self.state.value,
            "reason": self.reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "history": [e.to_dict() for e in self.history],
        }


class SessionTable:
    """All sessions this controller knows, with legal, stamped, emitted transitions."""

    def __init__(
        self, event_sink: EventSink | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._sessions: dict[str, Session] = {}
        # rig id -> its non-terminal sessions (normally one): heartbeats, health checks and the
        # housekeeping look sessions up per rig many times a second; no scan of the history.
        self._active: dict[str, dict[str, Session]] = {}
        self._sinks: list[EventSink] = [event_sink] if event_sink is not None else []
        self._clock = clock

    def add_sink(self, sink: EventSink) -> None:
        """Also send every event to `sink` (e.g. the telemetry writer)."""
        self._sinks.append(sink)

    def create(self, session: Session, reason: str = "created") -> Session:
        """Register a new session in `assigned` and emit its creation event."""
        if session.session_id in self._sessions:
            raise IllegalTransition(f"session {session.session_id} exists")
        now = self._clock()
        session.created_at = session.updated_at = now
        self._sessions[session.session_id] = session
        if session.active:
            self._active.setdefault(session.rig_id, {})[session.session_id] = session
        self._emit(session, SessionEvent(session.session_id, session.rig_id, None,
                                         session.state, now, reason))
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, or None when unknown."""
        return self._sessions.get(session_id)

    def all(self) -> list[Session]:
        """Every session, oldest first."""
        return list(self._sessions.values())

    def active_for_rig(self, rig_id: str) -> Session | None:
        """The rig's newest non-terminal session, if any (a rig runs one at a time)."""
        active = self._active.get(rig_id)
        if not active:
            return None
        # one C call with a default: `rig_row` reads this from other threads (the demo's live
        # view, operations metrics), and the loop may empty the dict after the check above
        return next(reversed(active.values()), None)

    def active(self) -> list[Session]:
        """Every non-terminal session."""
        return [s for per_rig in self._active.values() for s in per_rig.values()]

    def active_of_rig(self, rig_id: str) -> list[Session]:
        """Every non-terminal session of one rig (oldest first)."""
        return list(self._active.get(rig_id, {}).values())

    def prune(self, keep: int) -> list[str]:
        """Forget the oldest ended sessions beyond `keep` ended ones; return their ids."""
        ended = [sid for sid, s in self._sessions.items() if not s.active]
        drop = ended[: max(0, len(ended) - keep)]
        for sid in drop:
            del self._sessions[sid]
        return drop

    def move(self, session: Session, to: SessionState, reason: str = "") -> SessionEvent:
        """Apply one transition, or raise `IllegalTransition`."""
        if to not in TRANSITIONS[session.state]:
            raise IllegalTransition(f"{session.session_id}: {session.state} -> {to}")
        now = self._clock()
        event = SessionEvent(session.session_id, session.rig_id, session.state, to, now, reason)
        if to is SessionState.INTERRUPTED:
            session.resume_state = (
                SessionState.RUNNING if session.state is SessionState.ASSIGNED else session.state
            )
            session.interrupted_at = now
        elif session.state is SessionState.INTERRUPTED:
            session.resume_state = None
            session.interrupted_at = None
        session.state = to
        session.updated_at = now
        if not session.active:
            per_rig = self._active.get(session.rig_id)
            if per_rig is not None:
                per_rig.pop(session.session_id, None)
                if not per_rig:
                    del self._active[session.rig_id]
        if reason:
            session.reason = reason
        self._emit(session, event)
        return event

    def try_move(self, session: Session, to: SessionState, reason: str = "") -> bool:
        """`move` if legal; False (and nothing done) otherwise."""
        if to not in TRANSITIONS[session.state]:
            return False
        self.move(session, to, reason)
        return True

    def _emit(self, session: Session, event: SessionEvent) -> None:
        session.history.append(event)
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:  # a broken sink must not stop the engine
                import logging

                logging.getLogger(__name__).exception("event sink failed")
