"""The lab's data pipeline: scoring and telemetry plugged into the controller.

`LabPipeline` owns a :class:`telemetry.writer.TelemetryWriter` and gives the controller three
things (``Controller(cfg, pipeline.sink, observers=[pipeline.observer],
event_sink=pipeline.on_event)``):

* ``sink`` — the durable sink: every accepted chunk becomes a ``PoseBatch`` for TimescaleDB
  (or the writer's spool while the database is away); the controller acknowledges a chunk to
  the rig only when the writer reports it durable.
* ``observer`` — per session a :class:`lab_controller.scoring.SessionScorer` built from the
  exercise library: score windows and cues go to telemetry, cues go back to the rig, the final
  result is stored when the session ends.
* ``on_event`` — session state changes become ``session_events`` rows and ``sessions`` upserts.

Clock convention: the controller reports ``clock_offset_s`` = rig clock − controller clock;
telemetry wants controller-clock time, so corrected time = rig time − offset.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lab_controller import protocol as P
from lab_controller.controller.core import Controller
from lab_controller.controller.observers import SessionInfo
from lab_controller.controller.sessions import SessionEvent as ControllerEvent
from lab_controller.controller.sessions import SessionState
from lab_controller.controller.sinks import SinkBusy
from lab_controller.exercises import ExerciseNotFound, load_exercise
from lab_controller.scoring import Cue as ScoringCue
from lab_controller.scoring import FinalResult, ScoreWindow, SessionScorer
from sim_kernels.parameters import CUE_TEXT
from sim_kernels.session import ExerciseModel
from telemetry import records as rec
from telemetry import schema as tschema
from telemetry.writer import TelemetryWriter, WriterConfig, WriterError

log = logging.getLogger(__name__)

_MASK_BIT = int(P.ChunkFlags.MASK)  # plain int: `int & IntFlag` runs Python enum code

KERNEL_VERSION = "sim_kernels-1"

# Scoring's cue words -> which way the trainee must correct (index 0 = below the window).
_DIRECTION: dict[str, P.CueDirection] = {"ok": P.CueDirection.HOLD}
for _texts in CUE_TEXT.values():
    _DIRECTION[_texts[0][0]] = P.CueDirection.INCREASE
    _DIRECTION[_texts[1][0]] = P.CueDirection.DECREASE
_SEVERITY_LEVEL = {"info": 0, "warning": 1, "critical": 2}


def _us(t: float) -> int:
    return round(t * 1e6)


@dataclass
class LiveSession:
    """What the instructor's live view shows for one session (updated as windows complete)."""

    session_id: str
    rig_id: str
    trainee: str
    exercise_id: str
    class_id: str | None = None
    state: str = "assigned"
    progress: float = math.nan
    window_score: float = math.nan
    distance: float = math.nan
    out_of_window: tuple[str, ...] = ()
    windows: int = 0
    cues: int = 0
    samples: int = 0
    last_sample_wall: float | None = None
    result: FinalResult | None = None
    error: str | None = None


@dataclass
class _Scoring:
    info: SessionInfo
    scorer: SessionScorer | None
    offset_s: float  # rig clock - controller clock
    params: tuple[str, ...]
    ideal: np.ndarray[Any, np.dtype[np.float32]]
    lo: np.ndarray[Any, np.dtype[np.float32]]
    hi: np.ndarray[Any, np.dtype[np.float32]]
    window_idx: int = 0
    last_seq: int = -1
    active_cues: set[str] = field(default_factory=set)


class TelemetrySink:
    """DurableSink over the telemetry writer: chunk → PoseBatch; durable = what the writer acked."""

    def __init__(self, writer: TelemetryWriter | None = None) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self._durable: dict[str, int] = {}
        self._sessions: dict[bytes, tuple[uuid.UUID, str, float]] = {}  # by raw id bytes
        self._listener: Callable[[], None] | None = None
        self.submitted_chunks = 0
        self.submitted_samples = 0
        self.busy_refusals = 0

    @property
    def writer(self) -> TelemetryWriter:
        if self._writer is None:
            raise RuntimeError("TelemetrySink has no writer yet")
        return self._writer

    @writer.setter
    def writer(self, value: TelemetryWriter) -> None:
        self._writer = value

    # Called by the writer thread after each durable step.
    def on_ack(self, acks: dict[uuid.UUID, int]) -> None:
        with self._lock:
            for sid, seq in acks.items():
                key = str(sid)
                if seq > self._durable.get(key, -1):
                    self._durable[key] = seq
        listener = self._listener
        if listener is not None:
            listener()

    def set_listener(self, wake: Callable[[], None]) -> None:
        """The controller passes its loop's wake-up, so acks go out without waiting a tick."""
        self._listener = wake

    def bind_session(self, session_id: uuid.UUID, rig_id: str, offset_s: float | None) -> None:
        """Which rig a session belongs to and its clock offset (rig − controller), when known."""
        with self._lock:
            self._sessions[session_id.bytes] = (session_id, rig_id,
                                                0.0 if offset_s is None else offset_s)

    def submit(self, chunk: P.SampleChunk) -> None:
        # Runs on the controller loop for every chunk: hand the chunk over as it came
        # (PoseChunk); the writer thread builds the rows for many chunks in one numpy pass.
        h = chunk.header
        bound = self._sessions.get(h.session)
        if bound is None:
            sid = uuid.UUID(bytes=h.session)
            bound = (sid, f"handle-{h.rig_handle}", 0.0)
        valid = chunk.valid if h.flags & _MASK_BIT else None
        try:
            self.writer.submit(rec.PoseChunk(bound[0], bound[1], h.first_seq, h.count,
                                             h.rig_time_first, h.period, bound[2], chunk.poses,
                                             chunk.analog, valid), timeout=0)
        except TimeoutError as exc:
            self.busy_refusals += 1
            raise SinkBusy("telemetry writer queue full") from exc
        self.submitted_chunks += 1
        self.submitted_samples += h.count

    def durable(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._durable)

    def stats(self) -> dict[str, Any]:
        s = self.writer.stats()
        return {
            "writer_state": s.state.value,
            "rows_written": s.rows_written,
            "rows_deduplicated": s.rows_deduplicated,
            "spool_pending_records": s.spool_pending_records,
            "queue_rows": s.queue_rows,
            "submitted_chunks": self.submitted_chunks,
            "busy_refusals": self.busy_refusals,
        }

    def close(self) -> None:
        """The writer is owned by the pipeline; it closes it after the controller stopped."""


class ScoringObserver:
    """Per-session scoring; windows, cues and results go to telemetry, cues back to the rig."""

    def __init__(self, pipeline: LabPipeline) -> None:
        self._p = pipeline
        self._sessions: dict[str, _Scoring] = {}
        self._models: dict[tuple[str, float], ExerciseModel] = {}

    def _model(self, exercise_id: str, rate_hz: float) -> ExerciseModel:
        """One precomputed exercise model per (exercise, rate), shared by every rig of a class."""
        key = (exercise_id, float(rate_hz))
        model = self._models.get(key)
        if model is None:
            ex = load_exercise(exercise_id)
            model = ExerciseModel.build(ex.rubric, ex.scene["geometry"], rate_hz,
                                        ex.reference.tool_pose, ex.rate_hz)
            self._models[key] = model
        return model

    def on_start(self, info: SessionInfo) -> None:
        p = self._p
        live = p.live.setdefault(
            info.session_id,
            LiveSession(info.session_id, info.rig_id, info.trainee, info.exercise_id,
                        class_id=_class_of(info)),
        )
        live.state = "running"
        offset = info.clock_offset_s or 0.0
        p.sink.bind_session(uuid.UUID(info.session_id), info.rig_id, info.clock_offset_s)
        scorer: SessionScorer | None = None
        params: tuple[str, ...] = ()
        ideal = lo = hi = np.zeros(0, np.float32)
        if p.scoring:
            try:
                ex = load_exercise(info.exercise_id)
                tool = info.roles.index("tool") if "tool" in info.roles else 0
                scorer = SessionScorer.from_model(self._model(info.exercise_id, info.rate_hz), tool)
                model = scorer.model
                params = tuple(model.names)
                lo = np.asarray(model.lo, np.float32)
                hi = np.asarray(model.hi, np.float32)
                ideal = np.asarray(getattr(model, "ideal", (lo + hi) / 2), np.float32)
                p.submit(rec.SessionRecord(
                    session_id=uuid.UUID(info.session_id), rig_id=info.rig_id, state="running",
                    trainee_id=info.trainee, class_id=_class_of(info),
                    exercise_id=info.exercise_id, rubric_id=ex.rubric.rubric_id,
                    rubric_version=int(ex.rubric.version),
                    clock_offset_ms=None if info.clock_offset_s is None
                    else 1000.0 * info.clock_offset_s,
                ))
            except (ExerciseNotFound, ValueError) as exc:
                live.error = f"not scored: {exc}"
                log.warning("session %s not scored: %s", info.session_id, exc)
        self._sessions[info.session_id] = _Scoring(info, scorer, offset, params, ideal, lo, hi)

    def on_chunk(self, session_id: str, chunk: P.SampleChunk) -> Sequence[P.Cue]:
        # On the controller loop for every chunk: the common case (no window completed, no cue)
        # returns right after the kernel call.
        st = self._sessions.get(session_id)
        live = self._p.live.get(session_id)
        h = chunk.header
        if live is not None:
            live.samples += h.count
            live.last_sample_wall = time.time()
        if st is None or st.scorer is None:
            return ()
        if h.first_seq <= st.last_seq:
            return ()  # the controller drops duplicates already; never score a sample twice
        st.last_seq = h.first_seq + h.count - 1
        try:
            windows, cues = st.scorer.feed(h.rig_time_first, h.period, chunk.poses, chunk.valid)
        except ValueError as exc:
            if live is not None:
                live.error = str(exc)
            log.warning("session %s: chunk %d not scored: %s", session_id, chunk.first_seq, exc)
            return ()
        if not windows and not cues:
            return ()
        if windows:
            self._store_windows(st, windows, chunk.last_seq)
            if live is not None:
                last = windows[-1]
                live.windows += len(windows)
                live.window_score = last.score
                live.progress = last.progress
                live.distance = last.distance
        out: list[P.Cue] = []
        for cue in cues:
            if cue.active:
                st.active_cues.add(cue.parameter)
            else:
                st.active_cues.discard(cue.parameter)
            out.append(self._to_wire(st, cue, chunk))
            self._store_cue(st, cue)
        if live is not None:
            live.out_of_window = tuple(sorted(st.active_cues))
            live.cues += sum(1 for c in cues if c.active)
        return out

    def on_end(self, session_id: str, final_state: str) -> None:
        st = self._sessions.pop(session_id, None)
        live = self._p.live.get(session_id)
        if live is not None:
            live.state = final_state
        if st is None or st.scorer is None:
            return
        if final_state != SessionState.FINISHED.value:
            return  # aborted / failed sessions get no mark (their data is kept)
        try:
            result = st.scorer.finish()
        except ValueError as exc:
            log.warning("session %s: no final result: %s", session_id, exc)
            return
        if live is not None:
            live.result = result
        self._p.submit(_result_record(st.info, result))

    # ---- conversions ------------------------------------------------------------------
    def _store_windows(self, st: _Scoring, windows: list[ScoreWindow], seq_hi: int) -> None:
        n = len(windows)
        k = len(st.params)
        mean = np.full((n, k), np.nan, np.float32)
        std = np.full((n, k), np.nan, np.float32)
        frac = np.full((n, k), np.nan, np.float32)
        for i, w in enumerate(windows):
            for j, name in enumerate(st.params):
                m = w.metrics.get(name)
                if m is not None:
                    mean[i, j], std[i, j], frac[i, j] = m.mean, m.std, m.fraction_in_window
        idx = np.arange(st.window_idx, st.window_idx + n, dtype=np.int32)
        st.window_idx += n
        batch = rec.ScoreWindowBatch(
            session_id=uuid.UUID(st.info.session_id),
            rig_id=st.info.rig_id,
            window_idx=idx,
            time_us=np.array([_us(w.rig_time - st.offset_s) for w in windows], np.int64),
            seq_hi=np.full(n, seq_hi, np.int64),
            progress=np.array([w.progress for w in windows], np.float32),
            alignment_distance=np.array([w.distance for w in windows], np.float32),
            window_score=np.array([w.score for w in windows], np.float32),
            params=st.params,
            mean=mean,
            std=std,
            frac_in_window=frac,
            ideal=st.ideal,
            lo=st.lo,
            hi=st.hi,
        )
        self._p.submit(batch)

    def _store_cue(self, st: _Scoring, cue: ScoringCue) -> None:
        self._p.submit(rec.Cue(
            time_us=_us(cue.rig_time - st.offset_s),
            session_id=uuid.UUID(st.info.session_id),
            rig_id=st.info.rig_id,
            kind=cue.direction,
            param=cue.parameter,
            severity=_SEVERITY_LEVEL.get(cue.severity, 1),
            message=cue.message,
        ))

    def _to_wire(self, st: _Scoring, cue: ScoringCue, chunk: P.SampleChunk) -> P.Cue:
        lo = hi = None
        if cue.parameter in st.params:
            j = st.params.index(cue.parameter)
            lo, hi = float(st.lo[j]), float(st.hi[j])
        return P.Cue(
            session_id=st.info.session_id,
            parameter=cue.parameter,
            direction=_DIRECTION.get(cue.direction, P.CueDirection.NONE),
            message=cue.message[:200],
            severity=P.Severity(cue.severity) if cue.severity in P.Severity.__members__.values()
            else P.Severity.WARNING,
            target_low=lo if lo is not None and math.isfinite(lo) else None,
            target_high=hi if hi is not None and math.isfinite(hi) else None,
            ref_seq=chunk.last_seq,
            ref_rig_time=cue.rig_time,
            controller_time=time.time(),
        )


def _class_of(info: SessionInfo) -> str | None:
    if info.class_id:
        return info.class_id
    value = info.params.get("class_id") if info.params else None
    return str(value) if value else None


def _result_record(info: SessionInfo, r: FinalResult) -> rec.SessionResult:
    metrics = tuple(
        rec.MetricBreakdown(
            metric=m.name,
            value=_finite(m.mean),
            score=_finite(100.0 * m.fraction_in_window),
            weight=_finite(m.weight),
            time_in_window=_finite(m.fraction_in_window),
            ideal=_finite(m.ideal),
            lo=_finite(m.min),
            hi=_finite(m.max),
        )
        for m in r.metrics
    )
    c = r.components
    dq = r.data_quality
    components: dict[str, Any] = {
        "time_in_window": _finite(c.time_in_window),
        "consistency": _finite(c.consistency),
        "expert": _finite(c.expert),
        "smoothness": _finite(c.smoothness),
        "progress": _finite(r.progress),
        "advice": {m.name: m.advice for m in r.metrics if m.advice},
        "data_quality": {
            "samples": dq.samples,
            "valid_samples": dq.valid_samples,
            "interpolated_fraction": _finite(dq.interpolated_fraction),
            "gap_fraction": _finite(dq.gap_fraction),
            "gaps": dq.gaps,
            "longest_gap_s": _finite(dq.longest_gap_s),
        },
    }
    return rec.SessionResult(
        session_id=uuid.UUID(info.session_id),
        rubric_id=r.rubric_id,
        rubric_version=int(r.rubric_version),
        final_score=float(r.score),
        passed=bool(r.passed),
        trainee_id=info.trainee,
        exercise_id=info.exercise_id,
        level=r.level_name or None,
        weakest_parameter=r.weakest_parameter or None,
        alignment_distance=_finite(r.expert_rms),
        components=components,
        metrics=metrics,
        kernel_version=KERNEL_VERSION,
        scored_at_us=_us(time.time()),
    )


def _finite(v: object) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class LabPipeline:
    """Scoring + telemetry for one controller (see the module docstring)."""

    def __init__(self, dsn: str, config: WriterConfig, *, scoring: bool = True) -> None:
        self.sink = TelemetrySink()
        self.writer = TelemetryWriter(dsn, config, on_ack=self.sink.on_ack)
        self.sink.writer = self.writer
        self.scoring = scoring
        self.observer = ScoringObserver(self)
        self.live: dict[str, LiveSession] = {}
        self.dropped_records = 0
        self._metrics_stop = threading.Event()
        self._metrics_thread: threading.Thread | None = None

    def submit(self, record: rec.Record) -> None:
        """Low-rate records (windows, cues, events, results): block briefly, never drop silently."""
        try:
            self.writer.submit(record, timeout=5.0)
        except (TimeoutError, WriterError) as exc:
            self.dropped_records += 1
            log.error("telemetry record %s not stored: %s", type(record).__name__, exc)

    def on_event(self, ev: ControllerEvent) -> None:
        """Controller session transitions → session_events + sessions rows (controller thread)."""
        sid = uuid.UUID(ev.session_id)
        live = self.live.get(ev.session_id)
        if live is not None:
            live.state = ev.to_state.value
        now_us = _us(ev.at)
        if ev.from_state is None:
            self.sink.bind_session(sid, ev.rig_id, None)
        self.submit(rec.SessionEvent(
            time_us=now_us, session_id=sid, kind=f"state:{ev.to_state.value}", rig_id=ev.rig_id,
            detail={"from": None if ev.from_state is None else ev.from_state.value,
                    "reason": ev.reason},
        ))
        record: dict[str, Any] = {"session_id": sid, "rig_id": ev.rig_id,
                                  "state": ev.to_state.value, "reason": ev.reason or None}
        if ev.from_state is None:
            record["created_us"] = now_us
        if ev.to_state == SessionState.RUNNING:
            record["started_us"] = now_us
        if ev.to_state in (SessionState.FINISHED, SessionState.ABORTED, SessionState.FAILED):
            record["ended_us"] = now_us
        self.submit(rec.SessionRecord(**record))

    def register_session(self, row: Mapping[str, Any]) -> None:
        """Fill the descriptive columns of a session (trainee, exercise, class) from an API row."""
        sid = uuid.UUID(str(row["session_id"]))
        self.submit(rec.SessionRecord(
            session_id=sid, rig_id=str(row["rig_id"]), state=str(row["state"]),
            trainee_id=row.get("trainee"), class_id=row.get("class_id"),
            exercise_id=row.get("exercise_id"),
        ))

    def attach(self, controller: Controller, interval_s: float = 5.0) -> None:
        """Record the controller's operations metrics every `interval_s` (Lab operations board).

        Gauges: rigs online, each rig's sample rate and clock offset. Cumulative counters (reset
        when the process restarts, as docs/telemetry.md defines): frames NACKed per bad-input
        kind, duplicate samples dropped.
        """
        self._metrics_stop.clear()

        def loop() -> None:
            while not self._metrics_stop.wait(interval_s):
                try:
                    self._emit_metrics(controller)
                except RuntimeError as exc:  # a registry resized under us: next tick
                    log.debug("metrics skipped: %s", exc)

        self._metrics_thread = threading.Thread(target=loop, name="ops-metrics", daemon=True)
        self._metrics_thread.start()

    def _emit_metrics(self, controller: Controller) -> None:
        now = _us(time.time())
        out: list[rec.OpsMetric] = []
        rigs = list(controller.registry)
        out.append(rec.OpsMetric(now, "controller", tschema.METRIC_RIGS_ONLINE,
                                 float(sum(1 for r in rigs if r.alive))))
        for r in rigs:
            row = controller.rig_row(r)
            out.append(rec.OpsMetric(now, "controller", tschema.METRIC_SAMPLE_RATE_HZ,
                                     float(row.get("rate_hz") or 0.0), rig_id=r.rig_id))
            offset = row.get("clock_offset_s")
            if offset is not None:
                out.append(rec.OpsMetric(now, "controller", tschema.METRIC_CLOCK_OFFSET_MS,
                                         1000.0 * float(offset), rig_id=r.rig_id))
        for kind, count in controller.bad.snapshot().items():
            out.append(rec.OpsMetric(now, "controller", tschema.METRIC_FRAMES_NACKED,
                                     float(count), label=kind))
        dups = sum(int(controller.session_row(s).get("duplicates", 0))
                   for s in controller.sessions.all())
        out.append(rec.OpsMetric(now, "controller", tschema.METRIC_FRAMES_DROPPED, float(dups),
                                 label="duplicate"))
        for m in out:
            self.submit(m)

    def start(self) -> LabPipeline:
        """Compile the scoring kernels now (no JIT on the cue path), then start the writer."""
        if self.scoring:
            from sim_kernels import warmup

            warmup()
        self.writer.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Store everything queued, then close the writer (after the controller stopped)."""
        self._metrics_stop.set()
        if self._metrics_thread is not None:
            self._metrics_thread.join(timeout)
        self.writer.flush(timeout)
        self.writer.close(timeout)
