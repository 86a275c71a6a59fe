"""sim_kernels: the scoring kernels (numpy + numba, no I/O).

Public surface:

* alignment: :func:`dtw_distance`, :func:`dtw_open_end`, :func:`dtw_path`, :func:`lb_keogh`,
  :func:`dtw_batch`, :class:`StreamingDTW`
* process parameters: :mod:`sim_kernels.process` (``weld_sample_params``,
  ``spray_sample_params``, ``weave``, ``spray_passes``, ``lagged_speed``)
* motion quality: :func:`sparc`, :func:`ldlj`, :func:`motion_quality`, :func:`resample`
* real time: :func:`window_stats`, :class:`CueTracker`
* rubrics and scores: :class:`Rubric`, :func:`score_from_stats`, :class:`ExerciseModel`,
  :class:`SessionMetrics`, :func:`rescore_sessions`
* :func:`warmup` compiles every hot-path signature.
"""

from sim_kernels.dtw import dtw_batch, dtw_distance, dtw_open_end, dtw_path, lb_keogh
from sim_kernels.motion import ldlj, motion_quality, resample, sparc
from sim_kernels.rubric import Rubric, rubric_json_schema
from sim_kernels.scoring import score_from_stats
from sim_kernels.session import ExerciseModel, SessionMetrics, rescore_sessions
from sim_kernels.streaming import StreamingDTW
from sim_kernels.warmup import warmup
from sim_kernels.windows import CueTracker, window_stats

__all__ = [
    "CueTracker",
    "ExerciseModel",
    "Rubric",
    "SessionMetrics",
    "StreamingDTW",
    "dtw_batch",
    "dtw_distance",
    "dtw_open_end",
    "dtw_path",
    "lb_keogh",
    "ldlj",
    "motion_quality",
    "resample",
    "rescore_sessions",
    "rubric_json_schema",
    "score_from_stats",
    "sparc",
    "warmup",
    "window_stats",
]
