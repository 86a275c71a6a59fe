"""Names, units and cue wording of the process parameters the kernels compute.

One table so the rubric models, the kernels, the scorer and the docs agree on spelling,
column order and units. Column order here is the column order of every parameter array.
"""

from __future__ import annotations

from typing import Final, Literal

#: Welding (GMAW/MIG) parameters, in the column order of ``weld_parameters`` output.
WELD_PARAMS: Final = (
    "work_angle",  # deg, torch vs base plate in the plane normal to the weld line
    "travel_angle",  # deg, tilt along the weld line, push > 0, drag < 0
    "ctwd",  # mm, contact tip to joint along the torch axis
    "travel_speed",  # mm/s, tip speed projected on the weld line (lagged difference)
    "aim_offset",  # mm, lateral offset of the tip from the weld line (+ = right of travel)
    "weave_amplitude",  # mm, sqrt(2)*std of the detrended lateral offset (window metric)
    "weave_period",  # s, period of the side-to-side motion (window metric)
)

#: Spray-painting parameters, in the column order of ``spray_parameters`` output.
SPRAY_PARAMS: Final = (
    "gun_distance",  # mm, perpendicular distance from the gun tip to the surface plane
    "gun_angle",  # deg, angle between the gun axis and the surface (90 = square on)
    "gun_speed",  # mm/s, tip speed parallel to the surface (lagged difference)
    "pass_overlap",  # %, overlap of consecutive passes (event metric, one value per pass)
)

ALL_PARAMS: Final = WELD_PARAMS + SPRAY_PARAMS

ParamName = Literal[
    "work_angle",
    "travel_angle",
    "ctwd",
    "travel_speed",
    "aim_offset",
    "weave_amplitude",
    "weave_period",
    "gun_distance",
    "gun_angle",
    "gun_speed",
    "pass_overlap",
]

UNITS: Final[dict[str, str]] = {
    "work_angle": "deg",
    "travel_angle": "deg",
    "ctwd": "mm",
    "travel_speed": "mm/s",
    "aim_offset": "mm",
    "weave_amplitude": "mm",
    "weave_period": "s",
    "gun_distance": "mm",
    "gun_angle": "deg",
    "gun_speed": "mm/s",
    "pass_overlap": "%",
}

#: Parameters that are a value per sample (the others are per window or per pass).
SAMPLE_PARAMS: Final = frozenset(
    {"work_angle", "travel_angle", "ctwd", "travel_speed", "aim_offset",
     "gun_distance", "gun_angle", "gun_speed"}
)

#: Parameters that enter the time-warped comparison with the expert (instantaneous pose
#: quantities; speeds are what the warping absorbs, window metrics have no per-sample value).
ALIGN_PARAMS: Final = frozenset(
    {"work_angle", "travel_angle", "ctwd", "aim_offset", "gun_distance", "gun_angle"}
)

#: Cue direction and trainee-facing message when a value is below / above its window.
CUE_TEXT: Final[dict[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "work_angle": (("too_flat", "Work angle too flat: raise the torch"),
                   ("too_steep", "Work angle too steep: lower the torch")),
    "travel_angle": (("too_much_drag", "Too much drag: tilt the torch toward travel"),
                     ("too_much_push", "Too much push: tilt the torch back")),
    "ctwd": (("too_close", "Tip too close to the joint: back off"),
             ("too_far", "Tip too far from the joint: move closer")),
    "travel_speed": (("too_slow", "Travel too slow: speed up"),
                     ("too_fast", "Travel too fast: slow down")),
    "aim_offset": (("aim_left", "Aiming left of the joint: move right"),
                   ("aim_right", "Aiming right of the joint: move left")),
    "weave_amplitude": (("weave_too_narrow", "Weave too narrow: widen it"),
                        ("weave_too_wide", "Weave too wide: narrow it")),
    "weave_period": (("weave_too_fast", "Weave too fast: slow the side-to-side"),
                     ("weave_too_slow", "Weave too slow: quicken the side-to-side")),
    "gun_distance": (("too_close", "Gun too close to the surface: back off"),
                     ("too_far", "Gun too far from the surface: move closer")),
    "gun_angle": (("too_tilted", "Gun tilted: hold it square to the surface"),
                  ("angle_high", "Gun angle above window")),
    "gun_speed": (("too_slow", "Gun too slow: speed up"),
                  ("too_fast", "Gun too fast: slow down")),
    "pass_overlap": (("overlap_too_small", "Passes overlap too little: step less"),
                     ("overlap_too_large", "Passes overlap too much: step more")),
}
