"""Grafana's PostgreSQL data source macro expansion, re-implemented for tests and `check`.

No Grafana server can run on our machines (docs/dashboards.md), so the test suite and
`labctl dashboards check` expand every panel's SQL here and run it on a real TimescaleDB.
The rules follow Grafana's backend (`sqleng.Interpolate` then the PostgreSQL macro engine)
and frontend (`interpolateVariable`) as written down in the shared `grafana.md`:

1. dashboard variables (`$name`, `${name}`, `${name:fmt}`, `[[name]]`): a single value has
   `'` doubled and is not quoted; a multi-value (or include-all) variable becomes `'a','b'`;
2. `$__interval_ms`, then `$__interval` (plain replacement, so the longer name goes first);
3. `$__unixEpochFrom()`, `$__unixEpochTo()`;
4. SQL comments are stripped, outside quotes;
5. `$__name(args)` macros; arguments are split on `,` and trimmed, and cannot contain `)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = [
    "ALL",
    "MacroError",
    "TimeRange",
    "Variable",
    "expand",
    "format_interval",
    "parse_interval",
    "strip_comments",
    "substitute_variables",
]

ALL = "$__all"
"""The value Grafana stores when "All" is selected in an include-all variable."""


class MacroError(ValueError):
    """A macro Grafana would reject (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range plus the interval Grafana computed for the panel."""

    start: datetime
    end: datetime
    interval: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")
        if self.end < self.start:
            raise ValueError("time range ends before it starts")


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's current selection as the SQL data source sees it.

    `options` are all values the variable offers (used for "All" without a custom all value).
    """

    name: str
    value: str | Sequence[str]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: Sequence[str] = field(default_factory=tuple)


# --- step 1: dashboard variables ---------------------------------------------------------

# Grafana's template variable regex (public/app/features/variables/utils.ts, `variableRegex`).
_VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)


def _quote_literal(value: str) -> str:
    """PostgreSQL string literal, as the SQL data source's `quoteLiteral` writes it."""
    return "'" + value.replace("'", "''") + "'"


def _interpolate(variable: Variable) -> str:
    """The text Grafana's SQL data sources put in place of one variable."""
    value = variable.value
    if variable.include_all and (value == ALL or (not isinstance(value, str) and ALL in value)):
        if variable.all_value is not None:
            return variable.all_value  # a custom all value goes in raw, as in Grafana
        value = list(variable.options)
    if isinstance(value, str):
        if variable.multi or variable.include_all:
            return _quote_literal(value)
        return value.replace("'", "''")
    return ",".join(_quote_literal(v) for v in value)


def substitute_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    """Replace dashboard variables; names that are not variables (e.g. `$__timeFilter`) stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        return _interpolate(variable)

    return _VARIABLE_RE.sub(replace, sql)


# --- intervals (Grafana's gtime package) -------------------------------------------------

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DATE_UNIT_RE = re.compile(r"^(\d+)([wdy]|M)$")


def parse_interval(text: str, now: datetime | None = None) -> timedelta:
    """Parse an interval as Grafana's `gtime.ParseInterval` does.

    `d`, `w`, `M`, `y` are date units; `M` and `y` are counted back from `now` (so they depend on
    it, as in Grafana). Everything else is a Go duration (`300ms`, `1.5s`, `1h30m`).
    """
    date_unit = _DATE_UNIT_RE.match(text)
    if date_unit:
        count, unit = int(date_unit.group(1)), date_unit.group(2)
        if unit == "d":
            return timedelta(days=count)
        if unit == "w":
            return timedelta(weeks=count)
        now = now or datetime.now(UTC)
        if unit == "M":
            month0 = now.month - 1 - count
            year = now.year + month0 // 12
            month = month0 % 12 + 1
            # Go's AddDate normalises day overflow; clamp instead (only length matters here).
            day = min(now.day, 28)
            return now - now.replace(year=year, month=month, day=day)
        return now - now.replace(year=now.year - count, day=min(now.day, 28))
    if not text:
        raise MacroError("empty interval")
    pos, seconds = 0, 0.0
    for part in _GO_DURATION_RE.finditer(text):
        if part.start() != pos:
            break
        seconds += float(part.group(1)) * _GO_UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text) and text != "0":
        raise MacroError(f"invalid interval {text!r}")
    return timedelta(seconds=seconds)


def format_interval(interval: timedelta) -> str:
    """`$__interval` text: the largest whole unit, as Grafana's `gtime.FormatInterval`."""
    ms = int(interval / timedelta(milliseconds=1))
    for unit, size in (
        ("y", 365 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def _go_float(value: float) -> str:
    """A float as Go's `%v` prints it for the values we meet (300 → `300`, 0.5 → `0.5`)."""
    return repr(int(value)) if value == int(value) else repr(value)


def _rfc3339(moment: datetime) -> str:
    """Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction dropped."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += ("." + f"{utc.microsecond:06d}").rstrip("0")
    return text + "Z"


def _epoch(moment: datetime) -> int:
    """Unix seconds, truncated like Go's `Time.Unix()`."""
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1))


# --- step 4: comments ------------------------------------------------------------------


def strip_comments(sql: str) -> str:
    """Remove `-- …` and `/* … */` comments that are not inside '…' or "…" quotes."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == ch:
                    if end + 1 < n and sql[end + 1] == ch:  # doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# --- step 5: $__name(args) macros ---------------------------------------------------------

_MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def _need(name: str, args: list[str], count: int, what: str) -> None:
    if len(args) < count or not args[0]:
        raise MacroError(f"macro ${name} needs {what}")


def _macro(name: str, args: list[str], rng: TimeRange, timescaledb: bool) -> str:
    if name == "__time":
        _need(name, args, 1, "a time column")
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        _need(name, args, 1, "a time column")
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        _need(name, args, 1, "a time column")
        return f"{args[0]} BETWEEN '{_rfc3339(rng.start)}' AND '{_rfc3339(rng.end)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(rng.start)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(rng.end)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        _need(name, args, 2, "a time column and an interval (and an optional fill value)")
        seconds = parse_interval(args[1].strip("'"), rng.end).total_seconds()
        if timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{args[0]})"
        else:
            step = _go_float(seconds)
            group = f"floor(extract(epoch from {args[0]})/{step})*{step}"
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        _need(name, args, 1, "a time column")
        col = args[0]
        return f"{col} >= {_epoch(rng.start)} AND {col} <= {_epoch(rng.end)}"
    if name == "__unixEpochNanoFilter":
        _need(name, args, 1, "a time column")
        col = args[0]
        start, end = _epoch(rng.start) * 10**9, _epoch(rng.end) * 10**9
        start += rng.start.microsecond * 1000
        end += rng.end.microsecond * 1000
        return f"{col} >= {start} AND {col} <= {end}"
    if name == "__unixEpochNanoFrom":
        return str(_epoch(rng.start) * 10**9 + rng.start.microsecond * 1000)
    if name == "__unixEpochNanoTo":
        return str(_epoch(rng.end) * 10**9 + rng.end.microsecond * 1000)
    if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
        _need(name, args, 2, "a time column and an interval")
        step = _go_float(parse_interval(args[1].strip("'"), rng.end).total_seconds())
        group = f"floor(({args[0]})/{step})*{step}"
        return group + (' AS "time"' if name == "__unixEpochGroupAlias" else "")
    raise MacroError(f"undefined macro: ${name}")


def expand(
    sql: str,
    rng: TimeRange,
    variables: Mapping[str, Variable] | None = None,
    *,
    timescaledb: bool = True,
) -> str:
    """Expand `sql` exactly as Grafana would before sending it to PostgreSQL."""
    sql = substitute_variables(sql, variables or {})
    interval_ms = int(rng.interval / timedelta(milliseconds=1))
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", format_interval(rng.interval))
    sql = sql.replace("$__unixEpochFrom()", str(_epoch(rng.start)))
    sql = sql.replace("$__unixEpochTo()", str(_epoch(rng.end)))
    sql = strip_comments(sql)

    def replace(match: re.Match[str]) -> str:
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return _macro(match.group(1), args, rng, timescaledb)

    return _MACRO_RE.sub(replace, sql)
