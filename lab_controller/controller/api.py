"""Instructor API handlers (docs/protocol.md §16): one function per request type.

Runs on the controller loop. Requests that wait for rigs (start, stop, abort, class launch)
reply from the command's completion callback, so the loop never blocks on a rig.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab_controller import protocol as P
from lab_controller.controller.launch import ClassLaunch

if TYPE_CHECKING:
    from lab_controller.controller.core import CommandOutcome, Controller
    from lab_controller.controller.sessions import Session
    from lab_controller.controller.transport import Incoming


def handle_api(ctrl: Controller, inc: Incoming) -> None:
    """Decode one API request and dispatch it; every request gets exactly one reply."""
    env = inc.envelope
    if inc.truncated:
        ctrl.bad.record("malformed", "too many frames (api)")
        ctrl.api_reply(env, P.Error(code=P.ErrorKind.MALFORMED, detail="a message has 2 frames"))
        return
    try:
        msg = P.decode_control(inc.frames)
    except P.ProtocolError as exc:
        ref = P.peek_type(inc.frames[1]) if len(inc.frames) == 2 else ""
        ctrl.bad.record(exc.kind.value, f"api: {exc.detail}")
        ctrl.api_reply(env, P.Error(code=exc.kind, detail=exc.detail[:4000], ref_type=ref[:256]))
        return
    rid = getattr(msg, "request_id", "")

    def ok(data: dict[str, Any]) -> None:
        ctrl.api_reply(env, P.ApiReply(request_id=rid, ok=True, data=data))

    def fail(code: str, error: str, data: dict[str, Any] | None = None) -> None:
        ctrl.api_reply(env, P.ApiReply(request_id=rid, ok=False, error_code=code[:256],
                                       error=error[:4000], data=data or {}))

    if isinstance(msg, P.ApiRigs):
        ok({"rigs": [ctrl.rig_row(r) for r in ctrl.registry], "controller": ctrl.status()})
    elif isinstance(msg, P.ApiSessions):
        rows = [ctrl.session_row(s) for s in ctrl.sessions.all()
                if s.active or not msg.active_only]
        ok({"sessions": rows})
    elif isinstance(msg, P.ApiSessionShow):
        s = ctrl.sessions.get(msg.session_id)
        if s is None:
            fail("not_found", f"unknown session {msg.session_id}")
        else:
            ok({"session": ctrl.session_row(s, events=True)})
    elif isinstance(msg, P.ApiSessionStart):
        def started(session: Session, outcome: CommandOutcome) -> None:
            if outcome.ok:
                ok({"session": ctrl.session_row(session, events=True)})
            else:
                data = {"session": ctrl.session_row(session)} if session.session_id else {}
                fail(outcome.code, outcome.reason, data)

        ctrl.start_session(msg.rig_id, msg.exercise_id, msg.trainee,
                           rubric_version=msg.rubric_version, duration_s=msg.duration_s,
                           params=dict(msg.params), on_done=started)
    elif isinstance(msg, P.ApiSessionStop | P.ApiSessionAbort):
        abort = isinstance(msg, P.ApiSessionAbort)

        def stopped(session: Session | None, outcome: CommandOutcome) -> None:
            if session is None:
                fail(outcome.code or "not_found", outcome.reason)
            elif outcome.ok:
                ok({"session": ctrl.session_row(session, events=True),
                    "note": outcome.reason})
            else:
                fail(outcome.code, outcome.reason, {"session": ctrl.session_row(session)})

        ctrl.stop_session(msg.session_id, msg.reason, abort, stopped)
    elif isinstance(msg, P.ApiClassLaunch):
        def launched(good: bool, code: str, error: str, data: dict[str, Any]) -> None:
            if good:
                ok(data)
            else:
                fail(code, error, data)

        ClassLaunch(ctrl, msg, launched).run()
    else:
        ctrl.bad.record("unexpected_type", f"api: {msg.type}")
        ctrl.api_reply(env, P.Error(code=P.ErrorKind.UNKNOWN_TYPE,
                                    detail=f"{msg.type} is not an API request", ref_type=msg.type))
